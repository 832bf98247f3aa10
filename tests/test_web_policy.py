"""The page under its own Content-Security-Policy, and never inside another page's frame (issue 19, item 5).

Real Chromium against the real server, with the policy enforced (test_web_browser.py bypasses it: Playwright's
``wait_for_function`` evaluates strings, which the policy forbids). Every violation the browser reports is
recorded while the page draws, reads a photo, shows its pictures and trains; none may occur.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_web_browser import ARGS, chromium  # noqa: F401 (the fixture)
from test_web_serve import start, stop

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(small_model, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("policy")
    model = small_model.save(folder / "model.npz")
    proc, line = start(
        [str(model), "--port", "0"],
        {"XDG_CACHE_HOME": str(folder / "cache"), "PYFLUX_MNIST_DATA": str(mnist_dir)},
    )
    assert line.startswith("serving"), line
    yield line.split(" on ")[1].split()[0]
    stop(proc)


@pytest.fixture(scope="module")
def page(chromium: str, server: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 860},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        page.add_init_script(
            "window.cspViolations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        page.goto(server)
        page.locator("body[data-model-version='1']").wait_for(state="attached")
        yield page
        context.close()


def until(page, expression: str, seconds: float = 60) -> None:
    """Poll ``expression`` with ``page.evaluate`` (allowed under the policy, unlike wait_for_function)."""
    deadline = time.time() + seconds
    while not page.evaluate(expression):
        assert time.time() < deadline, f"never true: {expression}"
        time.sleep(0.1)


def test_the_page_works_under_its_policy(page, mnist, tmp_path: Path):
    from desk_photos import desk_photo

    box = page.locator("#pad").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.8, steps=10)
    page.mouse.up()
    until(page, "document.getElementById('draw-seen').naturalWidth === 28")  # a data: image

    photo = tmp_path / "two.jpg"
    desk_photo(mnist.test_images[1], np.random.default_rng(3), "turned").save(photo, quality=90)
    page.click("#tab-photo")
    page.set_input_files("#photo-file", str(photo))
    until(page, "document.querySelector('#photo-steps .strip img')?.naturalWidth > 300")

    page.click("#tab-inside")
    for name in ("weights", "confusion"):
        until(page, f"document.getElementById('pic-{name}').naturalWidth > 0", 120)

    page.click("#tab-train")
    page.locator("#recipe option").first.wait_for(state="attached")
    page.select_option("#recipe", "flux-tutorial")
    page.select_option("#backend", "numpy")
    page.fill("#steps", "5")
    page.click("#start")  # same-origin fetch, then the EventSource
    page.locator("body[data-model-version='2']").wait_for(state="attached", timeout=120_000)

    assert page.evaluate("window.cspViolations") == []


def test_another_page_cannot_frame_it(page, server: str):
    """Framed, the page could be made to take a click on Start or Stop (tried on the old code in Chromium:
    ``POST /api/train`` went through): Chromium now refuses to show it in any frame."""
    framing = page.context.new_page()
    try:
        framing.set_content(f'<iframe src="{server}" width="800" height="600"></iframe>')
        framing.wait_for_load_state("load")  # the frame's too: the page, or the browser's error page
        frames = [f for f in framing.frames if f != framing.main_frame]
        assert len(frames) == 1
        assert frames[0].query_selector("#tab-train") is None, "the page loaded inside another page's frame"
    finally:
        framing.close()
