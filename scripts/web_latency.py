"""Round-trip time of ``POST /api/predict`` on localhost: the numbers in docs/web.md.

Starts ``pyflux-mnist serve MODEL --port 0``, then sends 100 requests of each kind over one keep-alive
connection, as the page does: a drawing (an MNIST test digit as the RGBA PNG the page sends, 140×140,
and at the canvas's full 280×280) and a 12-megapixel
JPEG photo (4000×3000, an MNIST digit on lit paper with sensor noise). Prints the median and the 10th/90th
percentiles. Usage: ``python scripts/web_latency.py MODEL [--n 100]`` (needs the MNIST files).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import time

import numpy as np
from local_server import drawing, start_serve, stop_serve
from PIL import Image

from pyflux_mnist.mnist import load_mnist


def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    ink = np.asarray(Image.fromarray(digit).resize((2000, 2000), Image.Resampling.BICUBIC), np.float32) / 255
    page = np.zeros((3000, 4000), np.float32)
    page[500:2500, 1000:3000] = ink
    light = np.linspace(1.0, 0.6, 4000, dtype=np.float32)[None, :]
    grey = (225 + (35 - 225) * page) * light + rng.normal(0, 6, page.shape).astype(np.float32)
    rgb = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def measure(host: str, port: int, body: bytes | None, kind: str, n: int) -> tuple[list[float], list[float]]:
    """Round trips in ms, and the server's own time for each (its ``ms`` field; empty for a GET)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    times, server = [], []
    for _ in range(n + 3):  # the first few warm up the connection and the thread pool
        t0 = time.perf_counter()
        if body is None:
            conn.request("GET", "/api/model")
        else:
            # Drawings as the page sends them (?drawing=1: no sheet of paper looked for on a canvas).
            path = "/api/predict?drawing=1" if kind == "image/png" else "/api/predict"
            conn.request("POST", path, body, {"Content-Type": kind})
        response = conn.getresponse()
        answer = json.loads(response.read())
        times.append((time.perf_counter() - t0) * 1000)
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {answer}")
        if "ms" in answer:
            server.append(answer["ms"])
    conn.close()
    return times[3:], server[3:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    data = load_mnist()
    bodies = [
        ("drawing as the page sends it, 140×140 PNG", drawing(data.test_images[0], 140), "image/png"),
        ("drawing at the canvas's 280×280, PNG", drawing(data.test_images[0], 280), "image/png"),
        ("photo, 4000×3000 JPEG", photo(data.test_images[1], np.random.default_rng(0)), "image/jpeg"),
    ]
    proc, url = start_serve(args.model)
    try:
        host, port = url.split("http://")[1].split("/")[0].split(":")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        t, _ = measure(host, int(port), None, "", args.n)
        print(f"GET /api/model (the HTTP path alone): median {statistics.median(t):.1f} ms")
        for name, body, kind in bodies:
            t, server = measure(host, int(port), body, kind, args.n)
            q = statistics.quantiles(t, n=10)
            print(
                f"{name} ({len(body) / 1e6:.2f} MB): median {statistics.median(t):.1f} ms, "
                f"10th-90th percentile {q[0]:.1f}-{q[-1]:.1f} ms over {len(t)} requests; "
                f"of which the server's decoding, preprocessing and prediction: median "
                f"{statistics.median(server):.1f} ms"
            )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        stop_serve(proc)


if __name__ == "__main__":
    main()
