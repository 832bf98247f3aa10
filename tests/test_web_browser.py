"""The page end to end in a real browser: Playwright driving Debian's Chromium against the real server.

``pyflux-mnist serve --port 0`` starts with no model (so it trains one, as a first-time user's would), then
the tests draw a 7 with the mouse along the strokes of a real MNIST 7, upload a photo-like rendering,
open Look inside, and run a short training that must update the curve live and switch the model.
Screenshots of every tab go to ``$PYFLUX_MNIST_SCREENSHOTS`` (the docs' pictures) or a temporary folder.
Skipped with the reason where Playwright or Chromium is missing (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The strokes of MNIST test digit 0 (a 7), as (column, row) points in its 28×28 grid, read off its ink.
SEVEN = [
    (7, 8),
    (20, 8.5),
    (19.5, 11),
    (18, 13),
    (17, 15.5),
    (16, 18),
    (14.5, 20.5),
    (12.5, 22.5),
    (12, 25.5),
]


def _chromium() -> str | None:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium found at /usr/bin/chromium or on PATH (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("PYFLUX_MNIST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(chromium: str, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real server, started as a user would, with an empty cache: it trains its first model."""
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("serve-cache")),
        "PYFLUX_MNIST_DATA": str(mnist_dir),
        "PYFLUX_MNIST_OFFLINE": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyflux_mnist", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if match is None:
        proc.kill()
        pytest.fail(f"serve did not print its URL: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    yield match.group(0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "no model given: training one on NumPy (keras recipe, 1 epoch" in err
    assert err.strip().splitlines()[-1] == "stopped" and "Traceback" not in err


@pytest.fixture(scope="module")
def page(chromium: str, server: str, tmp_path_factory: pytest.TempPathFactory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=chromium,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 720},
            bypass_csp=True,  # wait_for_function evaluates strings, which the page's policy forbids
        )  # (the page's own scripts under its policy: test_web_policy.py)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server)
        page.wait_for_function("document.body.dataset.modelVersion === '1'")
        yield page
        context.close()


def test_the_seven_follows_a_real_mnist_seven(mnist):
    """Every point of the strokes lies on the ink of MNIST test digit 0, which is a 7."""
    assert mnist.test_labels[0] == 7
    digit = mnist.test_images[0]
    for (x0, y0), (x1, y1) in itertools.pairwise(SEVEN):
        for t in np.linspace(0, 1, 12):
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            assert digit[round(y), round(x)] > 100, (x, y)


def test_draw_a_seven(page, shots: Path):
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 28

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * scale, box["y"] + y * scale

    page.mouse.move(*at(*SEVEN[0]))
    page.mouse.down()
    for point in SEVEN[1:]:
        page.mouse.move(*at(*point), steps=8)
    page.mouse.up()
    # The answer shown is the finished drawing's once no request is pending (the page debounces).
    page.wait_for_function("document.body.dataset.drawPending === '0'")
    assert page.locator("#draw-answer").text_content() == "7"
    assert page.locator("#draw-bars .top").first.text_content() == "7"
    assert page.evaluate("document.getElementById('draw-seen').naturalWidth") == 28
    page.screenshot(path=str(shots / "web-draw.png"))


def test_photo(page, mnist, tmp_path: Path, shots: Path):
    from desk_photos import desk_photo

    photo = tmp_path / "two-on-a-desk.jpg"  # MNIST test digit 1, a 2, on a turned sheet on a wooden desk
    desk_photo(mnist.test_images[1], np.random.default_rng(3), "turned").save(photo, quality=90)
    page.click("#tab-photo")
    page.set_input_files("#photo-file", str(photo))
    page.wait_for_function("!['?', '…'].includes(document.getElementById('photo-answer').textContent)")
    assert page.locator("#photo-answer").text_content() == str(mnist.test_labels[1])
    assert page.locator("#photo-error").text_content() == ""
    page.wait_for_function("document.querySelector('#photo-steps .strip img')?.naturalWidth > 300")
    page.screenshot(path=str(shots / "web-photo.png"), full_page=True)

    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (200, 200), 230).save(blank)
    page.set_input_files("#photo-file", str(blank))
    page.wait_for_function("document.getElementById('photo-error').textContent !== ''")
    assert "ink" in (page.locator("#photo-error").text_content() or "")


def test_look_inside(page, shots: Path):
    page.click("#tab-inside")
    assert "keras" in (page.locator("#card").text_content() or "")
    for name in ("weights", "backquery", "confusion", "loss"):
        page.wait_for_function(
            f"document.getElementById('pic-{name}').complete && "
            f"document.getElementById('pic-{name}').naturalWidth > 0",
            timeout=60_000,
        )
    page.screenshot(path=str(shots / "web-inside.png"), full_page=True)


def test_train_updates_the_curve_and_switches_the_model(page, shots: Path):
    page.click("#tab-train")
    page.wait_for_selector("#recipe option", state="attached")
    page.select_option("#recipe", "flux-tutorial")
    page.select_option("#backend", "numpy")
    page.fill("#steps", "40")
    page.click("#start")
    # A training child runs at a lower priority than the server: on a busy machine it starts late.
    page.wait_for_function("Number(document.getElementById('curve').dataset.points) >= 2", timeout=120_000)
    during = int(page.locator("#curve").get_attribute("data-points") or 0)
    assert page.locator("#stop").is_enabled()
    page.wait_for_function("document.body.dataset.modelVersion === '2'", timeout=120_000)
    assert int(page.locator("#curve").get_attribute("data-points") or 0) == 40 > during
    assert "flux-tutorial" in (page.locator("#model-line").text_content() or "")
    page.wait_for_function("document.getElementById('train-status').textContent.startsWith('done')")
    page.screenshot(path=str(shots / "web-train.png"), full_page=True)


def test_phone_width(page, shots: Path):
    page.set_viewport_size({"width": 360, "height": 740})
    for tab in ("train", "inside", "photo", "draw"):
        page.click(f"#tab-{tab}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the {tab} tab is {width} px wide at a 360 px viewport"
        page.screenshot(path=str(shots / f"web-phone-{tab}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 720})


def test_the_server_survived(server: str):
    import urllib.request

    with urllib.request.urlopen(server + "api/model", timeout=10) as r:
        assert r.status == 200
