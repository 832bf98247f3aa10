"""From the pen lifted to the answer on screen, in a real browser: the Draw tab's figure in docs/web.md.

Drives Debian's Chromium through Playwright (headless, as the browser tests do) against ``serve``: draws
``--n`` MNIST test digits with the mouse, each as strokes through its ink (nearest ink pixel next, a new
stroke where the next is more than 2 px away), and times each from the last ``pointerup`` to the first
frame painted after the page has shown the answer (``body[data-draw-pending]`` back to ``0``), in the
page's own clock. Prints the median, 10th-90th percentiles, and how many digits were read right.

    python scripts/web_page_latency.py MODEL [--n 100]          # starts `serve MODEL --port 0`
    python scripts/web_page_latency.py --url http://127.0.0.1:8000/

A benchmark, not a test: it asserts nothing about time. Loopback only; at most 500 digits. Needs the
MNIST files, Playwright and Chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from urllib.parse import urlsplit

import numpy as np
from local_server import start_serve, stop_serve

from pyflux_mnist.mnist import load_mnist

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # fmt: skip
MAX_DIGITS = 500
#: In the page: each pointerup starts a clock; the first frame after the answer is shown stops it.
TIMER = """
window.__up = null; window.__latency = null;
window.addEventListener("pointerup", () => {
  window.__up = performance.now(); window.__latency = null;
}, true);
document.addEventListener("DOMContentLoaded", () => new MutationObserver(() => {
  if (document.body.dataset.drawPending !== "0" || window.__up === null || window.__latency !== null) return;
  const up = window.__up;
  requestAnimationFrame(() => { if (window.__up === up) window.__latency = performance.now() - up; });
}).observe(document.body, { attributes: true, attributeFilter: ["data-draw-pending"] }));
"""


def strokes(digit: np.ndarray, threshold: int = 128) -> list[list[tuple[float, float]]]:
    """The digit's ink pixels as pen strokes: from the top-left ink pixel, always the nearest unvisited
    one next; a jump of more than 2 px lifts the pen."""
    ys, xs = np.nonzero(digit > threshold)
    left = [(float(x) + 0.5, float(y) + 0.5) for y, x in zip(ys, xs, strict=True)]
    out: list[list[tuple[float, float]]] = []
    point = left.pop(0)
    stroke = [point]
    while left:
        d = [(px - point[0]) ** 2 + (py - point[1]) ** 2 for px, py in left]
        k = int(np.argmin(d))
        point = left.pop(k)
        if d[k] > 4.0:
            out.append(stroke)
            stroke = []
        stroke.append(point)
    out.append(stroke)
    return [s for s in out if len(s) > 1] or out[:1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--url")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    if not 1 <= args.n <= MAX_DIGITS:
        parser.error(f"--n must be 1 to {MAX_DIGITS}")
    if (args.model is None) == (args.url is None):
        parser.error("give a MODEL file to serve, or --url of a running server (not both)")
    from playwright.sync_api import sync_playwright

    data = load_mnist()
    proc, url = (None, args.url) if args.url else start_serve(args.model)
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("this benchmark only talks to this machine (127.0.0.1, localhost)")
    times, right = [], 0
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=ARGS,
                viewport={"width": 1280, "height": 860},
                bypass_csp=True,  # the timer's wait_for_function evaluates strings, which the policy forbids
            )
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            page.add_init_script(TIMER)
            page.goto(url)
            page.wait_for_function("document.body.dataset.modelVersion !== undefined")
            box = page.locator("#pad").bounding_box()
            assert box is not None
            scale = box["width"] / 28
            for i in range(args.n):
                for stroke in strokes(data.test_images[i]):
                    page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
                    page.mouse.down()
                    for x, y in stroke[1:]:
                        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
                    page.mouse.up()
                page.wait_for_function("window.__latency !== null")
                times.append(page.evaluate("window.__latency"))
                right += page.locator("#draw-answer").text_content() == str(data.test_labels[i])
                page.click("#clear")
                page.wait_for_function("document.body.dataset.drawPending === '0'")
            context.close()
        q = statistics.quantiles(times, n=10)
        print(
            f"{len(times)} drawings: pen up to the answer on screen, "
            f"median {statistics.median(times):.1f} ms, "
            f"10th-90th percentile {q[0]:.1f}-{q[-1]:.1f} ms, max {max(times):.1f} ms; "
            f"{right} of {len(times)} read right"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if proc is not None:
            stop_serve(proc)


if __name__ == "__main__":
    main()
