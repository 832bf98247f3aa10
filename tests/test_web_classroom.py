"""The page as a class uses it, in a real browser (Playwright driving Debian's Chromium against ``serve``):
two tabs kept in step by the live channel, a page opened after a run, the Train form (hint, double click,
focus, reload mid-run), the Photo tab's messages, what the Draw tab shows before anything is drawn, a
tiny dot, keyboard and touch details. ``serve MODEL`` with a small model file: no first training here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_web_browser import ARGS, SEVEN, _chromium
from test_web_serve import start as start_serve
from test_web_serve import stop_cleanly as finish

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium found at /usr/bin/chromium or on PATH (apt-get install -y chromium)")
    return path


def start(model: Path, folder: Path, data: str) -> tuple[subprocess.Popen[str], str]:
    env = {"XDG_CACHE_HOME": str(folder / "cache"), "PYFLUX_MNIST_DATA": data, "PYFLUX_MNIST_OFFLINE": "1"}
    proc, line = start_serve([str(model), "--port", "0"], env)
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if match is None:
        proc.kill()
        pytest.fail(f"serve did not print its URL: {line!r}")
    return proc, match.group(0)


@pytest.fixture(scope="module")
def url(chromium: str, small_model, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("classroom")
    proc, address = start(small_model.save(folder / "model.npz"), folder, str(mnist_dir))
    yield address
    finish(proc)


@pytest.fixture(scope="module")
def browser(chromium: str, tmp_path_factory: pytest.TempPathFactory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 720},
            bypass_csp=True,  # wait_for_function evaluates strings, which the page's policy forbids
        )  # (the page's own scripts under its policy: test_web_policy.py)
        context.set_default_timeout(60_000)
        yield context
        context.close()


def open_page(browser, url: str, where: str = ""):
    page = browser.new_page()
    page.goto(url + where)
    page.wait_for_function("document.body.dataset.modelVersion !== undefined")
    return page


def draw(page, points, scale_to=28) -> None:
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / scale_to
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=6)
    page.mouse.up()
    page.wait_for_function("document.body.dataset.drawPending === '0'")


def test_draw_shows_no_broken_image_before_after_clear_and_after_undo(browser, url: str):
    page = open_page(browser, url)
    seen = page.locator("#draw-seen")
    assert not seen.is_visible() and seen.get_attribute("src") is None  # before any drawing
    draw(page, SEVEN)
    assert page.locator("#draw-answer").text_content() == "7" and seen.is_visible()
    page.click("#clear")
    page.wait_for_function("document.body.dataset.drawPending === '0'")
    assert not seen.is_visible() and page.locator("#draw-answer").text_content() == "?"
    draw(page, SEVEN)
    page.click("#undo")
    page.wait_for_function("document.body.dataset.drawPending === '0'")
    assert not seen.is_visible()
    page.close()


def test_a_dot_asks_for_a_larger_digit(browser, url: str):
    page = open_page(browser, url)
    draw(page, [(14, 14), (14.3, 14.2)])
    assert "Draw larger" in (page.locator("#draw-error").text_content() or "")
    assert page.locator("#draw-answer").text_content() == "?"
    page.close()


def test_a_pointer_that_cannot_be_captured_still_draws(browser, url: str):
    """A synthetic pointer has no active pointer id: setPointerCapture throws, the stroke must stay."""
    page = open_page(browser, url)
    page.evaluate(
        """() => {
          const pad = document.getElementById('pad'), r = pad.getBoundingClientRect();
          const at = (type, y) => pad.dispatchEvent(new PointerEvent(type, {pointerId: 77, bubbles: true,
              clientX: r.left + r.width / 2, clientY: r.top + y * r.height}));
          at('pointerdown', 0.15);
          for (let y = 0.2; y <= 0.85; y += 0.05) at('pointermove', y);
          at('pointerup', 0.85);
        }"""
    )
    page.wait_for_function("document.body.dataset.drawPending === '0'")
    assert page.locator("#draw-answer").text_content() == "1"
    page.close()


def test_buttons_take_quick_taps_and_the_tabs_take_home_and_end(browser, url: str):
    page = open_page(browser, url)
    assert page.eval_on_selector("#clear", "b => getComputedStyle(b).touchAction") == "manipulation"
    page.focus("#tab-draw")
    page.keyboard.press("End")
    assert (
        page.evaluate("document.activeElement.id") == "tab-train"
        and page.locator("#panel-train").is_visible()
    )
    assert page.evaluate("window.scrollY") == 0
    page.keyboard.press("Home")
    assert (
        page.evaluate("document.activeElement.id") == "tab-draw" and page.locator("#panel-draw").is_visible()
    )
    page.close()


def test_photo_messages_are_for_people(browser, url: str, tmp_path: Path):
    from PIL import Image

    page = open_page(browser, url, "#photo")
    assert page.locator("#panel-photo").is_visible()  # the tab is in the address
    # Enter opens the chooser, as Space does: the input is clicked (headless Chromium shows the chooser
    # only to the page in front, which a test with several pages cannot rely on).
    page.evaluate(
        "() => { window.clicks = 0; document.getElementById('photo-file')"
        ".addEventListener('click', (e) => { e.preventDefault(); window.clicks++; }); }"
    )
    page.focus("#photo-file")
    page.keyboard.press("Enter")
    assert page.evaluate("window.clicks") == 1
    notes = tmp_path / "notes.txt"
    notes.write_text("eggs, milk")
    page.set_input_files("#photo-file", str(notes))
    page.wait_for_function("document.getElementById('photo-error').textContent !== ''")
    assert page.locator("#photo-error").text_content() == "notes.txt is not an image (PNG, JPEG, …)"
    assert not page.locator("#photo-preview").is_visible()
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 200), 230).save(blank)
    page.set_input_files("#photo-file", str(blank))
    page.wait_for_function("document.getElementById('photo-error').textContent.startsWith('blank.png')")
    assert "the upload" not in (page.locator("#photo-error").text_content() or "")
    page.close()


def test_the_empty_loss_chart_has_a_readable_scale(browser, url: str):
    page = open_page(browser, url, "#train")
    page.wait_for_selector("#recipe option", state="attached")
    assert page.locator("#curve").get_attribute("data-yticks") == "0 1 2 3"  # not 0.000010 ...
    page.select_option("#recipe", "keras")
    hint = page.locator("#steps-hint").text_content() or ""
    assert "5 epochs" in hint and "2345 steps" in hint and "200" not in hint
    assert page.locator("#steps").get_attribute("placeholder") == "2345 (recipe's)"
    page.close()


def test_every_tab_follows_a_run_and_the_form_is_one_click(browser, url: str):
    """A student's tab (Draw) and the teacher's (Train) stay in step; a double click starts one run; the
    focus goes to Stop, then back to Start; a tab opened afterwards shows the run."""
    student = open_page(browser, url)
    draw(student, SEVEN)
    teacher = open_page(browser, url, "#train")
    posts: list[int] = []
    teacher.on(
        "response",
        lambda r: (
            posts.append(r.status) if r.url.endswith("/api/train") and r.request.method == "POST" else None
        ),
    )
    teacher.wait_for_selector("#recipe option", state="attached")
    teacher.select_option("#recipe", "flux-tutorial")
    teacher.fill("#steps", "15")
    teacher.dblclick("#start")
    teacher.wait_for_function("document.body.dataset.training === 'running'", timeout=120_000)
    assert teacher.evaluate("document.activeElement.id") == "stop"
    student.wait_for_function("document.body.dataset.training === 'running'")  # the student's Train tab too
    teacher.wait_for_function("document.body.dataset.modelVersion === '2'", timeout=120_000)
    teacher.wait_for_function("document.getElementById('train-status').textContent.startsWith('done')")
    assert posts == [202]  # one run, no 409 "busy"
    assert teacher.evaluate("document.activeElement.id") == "start" and teacher.locator("#start").is_enabled()
    assert teacher.locator("#curve").get_attribute("data-points") == "15"
    # The student's tab: the new model in the header, the drawing read again, the Train tab up to date.
    student.wait_for_function("document.body.dataset.modelVersion === '2'")
    assert "flux-tutorial (steps 15)" in (student.locator("#model-line").text_content() or "")
    student.wait_for_function("document.body.dataset.drawPending === '0'")
    student.click("#tab-train")
    assert (student.locator("#train-status").text_content() or "").startswith("done")
    assert (
        student.locator("#start").is_enabled()
        and student.locator("#curve").get_attribute("data-points") == "15"
    )
    student.click("#tab-inside")
    assert "flux-tutorial (steps 15)" in (student.locator("#card").text_content() or "")
    late = open_page(browser, url, "#train")  # opened after the run
    late.wait_for_function("document.getElementById('curve').dataset.points === '15'")
    assert (late.locator("#train-status").text_content() or "").startswith("done")
    for p in (student, teacher, late):
        p.close()


def test_a_reload_mid_run_opens_the_run(browser, url: str):
    page = open_page(browser, url, "#train")
    page.wait_for_selector("#recipe option", state="attached")
    page.select_option("#recipe", "flux-tutorial")
    page.fill("#steps", "100000")
    page.fill("#seed", "3")
    page.click("#start")
    page.wait_for_function("Number(document.getElementById('curve').dataset.points) >= 1", timeout=120_000)
    page.reload()
    page.wait_for_function("Number(document.getElementById('curve').dataset.points) >= 1", timeout=60_000)
    assert page.locator("#panel-train").is_visible()
    assert page.input_value("#steps") == "100000" and page.input_value("#seed") == "3"
    assert page.input_value("#recipe") == "flux-tutorial"
    assert page.locator("#stop").is_enabled() and not page.locator("#start").is_enabled()
    page.click("#stop")
    page.wait_for_function("document.getElementById('train-status').textContent.startsWith('stopped')")
    assert page.evaluate("document.activeElement.id") == "start"
    page.close()


def test_without_mnist_look_inside_says_why_once(browser, small_model, tmp_path: Path):
    (tmp_path / "no-mnist").mkdir()
    proc, address = start(small_model.save(tmp_path / "model.npz"), tmp_path, str(tmp_path / "no-mnist"))
    try:
        page = open_page(browser, address, "#inside")
        page.wait_for_function("document.querySelectorAll('#pictures .missing').length === 3")
        said = page.locator("#pictures .missing").all_text_contents()
        assert sum("MNIST" in t for t in said) == 1, said  # the back-query's prior and the confusion matrix
        assert "not shown: the same reason as above" in said
        assert page.evaluate("document.getElementById('pic-weights').naturalWidth") > 0
        page.close()
    finally:
        err = finish(proc)
    assert err.count("Warning: the MNIST files are not in") == 1
