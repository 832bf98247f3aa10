"""``train()``'s own progress: a bar where a person watches (a terminal here, a notebook in
test_tutorial_notebook.py), nothing in a log or a pipe, nothing when the caller passes ``on_progress``."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A small real run: 1000 digits, 30 full-batch steps (well under a second of training).
SCRIPT = """
import sys
import pyflux_mnist as pm
from pyflux_mnist.mnist import load_mnist
sys.path.insert(0, {tests!r})
from subset import Subset
data = Subset(load_mnist({data!r}, offline=True), 1000, 500)
calls = []
on_progress = (lambda d, t, loss: calls.append(d)) if {given} else None
result = pm.train("flux-tutorial", backend="numpy", data=data, steps=30, on_progress=on_progress)
print("RESULT", len(result.losses), len(calls), flush=True)
"""


def _script(mnist_dir: Path, given: bool) -> list[str]:
    code = SCRIPT.format(tests=str(REPO / "tests"), data=str(mnist_dir), given=given)
    return [sys.executable, "-c", code]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _run_in_terminal(argv: list[str], timeout: float = 120.0) -> tuple[str, str]:
    """Run ``argv`` with stderr on a pseudo-terminal, stdout a pipe: (stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns, as a window
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=_env())
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal (Linux: EIO)
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return out.decode(), seen.decode(errors="replace")


def test_a_terminal_gets_a_bar_of_the_steps_with_the_loss(mnist_dir) -> None:
    out, terminal = _run_in_terminal(_script(mnist_dir, given=False))
    assert "RESULT 30 0" in out
    last = terminal.replace("\r", "\n").strip().splitlines()[-1]
    assert "flux-tutorial (steps 30) [numpy]" in last  # the recipe as changed, and the backend
    assert "30/30" in last and "100%" in last
    assert "loss " in last and "warm-up" in last


def test_a_caller_with_on_progress_gets_no_bar_even_in_a_terminal(mnist_dir) -> None:
    out, terminal = _run_in_terminal(_script(mnist_dir, given=True))
    assert "RESULT 30 30" in out  # the caller's function saw every step
    assert terminal == ""


def test_nothing_goes_to_a_log_or_a_pipe(mnist_dir) -> None:
    proc = subprocess.run(_script(mnist_dir, given=False), capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "RESULT 30 0" in proc.stdout
    assert proc.stderr == ""


def test_the_bar_counts_rate_and_eta_after_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a real tqdm: after the first update (the warm-up), the bar's clock restarts there."""
    import io

    from pyflux_mnist import progress_display

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress_display.StepBar("run", 20, "terminal")
    time.sleep(0.3)  # the warm-up
    warm = time.time()  # tqdm's clock
    bar(5, 20, 2.5)
    assert bar.bar.n == 5 and bar.bar.total == 20
    assert bar.bar.start_t >= warm  # the bar's clock starts after the warm-up, not before it
    for done in range(6, 21):
        bar(done, 20, 1.0)
    bar.close()
    text = stream.getvalue().replace("\r", "\n")
    assert "20/20" in text and "loss 1.0000, warm-up" in text
    warm_up = re.search(r"warm-up (\d+\.\d) s", text)
    assert warm_up is not None and float(warm_up.group(1)) >= 0.3  # the warm-up is said apart
