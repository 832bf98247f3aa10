"""What the web benchmarks here share: a drawing as the page posts it, and ``serve MODEL --port 0`` started
for one run (its address read from the line it prints) and stopped with Ctrl-C, as a person would."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys

import numpy as np
from PIL import Image


def drawing(digit: np.ndarray, side: int = 140) -> bytes:
    """An MNIST digit as the Draw tab posts it: a ``side``-pixel square RGBA PNG (140: the page's canvas)."""
    buf = io.BytesIO()
    Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC).convert("RGBA").save(buf, "PNG")
    return buf.getvalue()


def start_serve(model: str) -> tuple[subprocess.Popen[str], str]:
    """``serve MODEL --port 0`` and the base URL it prints (``http://127.0.0.1:PORT/``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyflux_mnist", "serve", model, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    found = re.search(r"http://[^/\s]+/", line)
    if found is None:
        proc.kill()
        raise SystemExit(f"serve did not print its address: {line!r}")
    return proc, found.group(0)


def stop_serve(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C, and wait for the server to end."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
