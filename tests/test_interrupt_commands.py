"""Ctrl-C as a terminal sends it (SIGINT to the whole process group) on the real commands: ``bench`` with
its worker processes, and ``tutorial`` and ``reproduce``, which keep no checkpoints."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_runs import start_cli

#: Generous: a busy machine is slow, and nothing here measures speed.
DEADLINE_S = 180


class Command:
    """``pyflux-mnist ARGS`` in a session of its own (as a shell runs a job), its output read line by line
    (stdout and stderr into one list)."""

    def __init__(self, *args: str, data_dir: Path) -> None:
        env = {"PYFLUX_MNIST_JULIA": "0", "PYFLUX_MNIST_DATA": str(data_dir)}
        self.proc = start_cli(*args, env=env, start_new_session=True)
        self.lines: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.lines)
            time.sleep(0.02)

    def children(self) -> list[int]:
        """PIDs of the processes this command started (from /proc: no extra package needed)."""
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                kids.append(int(stat.parent.name))
        return kids

    def ctrl_c(self) -> tuple[int, list[str]]:
        """SIGINT to the command's whole process group; its exit code and the stderr lines after it."""
        seen = len(self.lines)
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=DEADLINE_S)
        for reader in self.readers:
            reader.join(timeout=DEADLINE_S)
        return code, [line for line in self.lines[seen:] if line.strip()]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_ctrl_c_on_bench_is_one_line_exit_130_and_no_worker_left(mnist_dir) -> None:
    bench = Command("bench", "--backends", "numpy", "--steps", "2", "--repeat", "1000", data_dir=mnist_dir)
    bench.wait_for("round 2/1000")  # workers started, timed rounds under way
    workers = bench.children()
    assert len(workers) == 2, workers  # the numpy worker and the sgemm one
    code, after = bench.ctrl_c()
    assert code == 130, bench.lines
    assert not any("Traceback" in line or "Error" in line for line in bench.lines[:-1]), bench.lines
    # One line: a round's progress line may have been on its way when the signal came.
    assert after[-1] == "Error: interrupted" and len([a for a in after if not a.startswith("round ")]) == 1
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers still running: {workers}"
        time.sleep(0.05)


def test_ctrl_c_on_tutorial_says_what_is_true_for_it(mnist_dir) -> None:
    tutorial = Command("tutorial", data_dir=mnist_dir)
    tutorial.wait_for("loss(X, Y) = ")  # printed after the first step: training is under way
    code, after = tutorial.ctrl_c()
    text = "\n".join(tutorial.lines)
    assert code == 130, text
    assert "Traceback" not in text and "to be able to resume" not in text
    assert after[-1].startswith("Error: interrupted after step ") and "nothing saved" in after[-1], text
    assert "the tutorial always starts from the beginning" in after[-1]


def test_ctrl_c_on_reproduce_says_what_is_true_for_it(mnist_dir) -> None:
    reproduce = Command("reproduce", "rashid", data_dir=mnist_dir)
    reproduce.wait_for("[1/1] rashid seed 0: step ")  # its progress: the first line off a terminal
    code, after = reproduce.ctrl_c()
    assert code == 130, reproduce.lines
    assert "Traceback" not in "\n".join(reproduce.lines)
    assert after[-1].startswith("Error: interrupted after step ") and "in [1/1] rashid seed 0" in after[-1]
    assert "reproduce keeps no checkpoints" in after[-1] and "--checkpoint" not in after[-1]


# --- issue 19, item 9: SIGTERM and SIGHUP (a `kill`, a closed terminal), and a parent killed outright -----


def _signal_alone(command: Command, sig: int) -> tuple[int, list[str]]:
    """``sig`` to the command's process only (as `kill PID` or a closing terminal's hang-up would)."""
    seen = len(command.lines)
    os.kill(command.proc.pid, sig)
    code = command.proc.wait(timeout=DEADLINE_S)
    for reader in command.readers:
        reader.join(timeout=DEADLINE_S)
    return code, [line for line in command.lines[seen:] if line.strip()]


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"workers still running: {[p for p in pids if not _gone(p)]}"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_on_bench_ends_its_workers(mnist_dir, sig) -> None:
    """Item 9: the parent died of the signal and its workers (in their own session) lived on, for hours at
    --steps 100000. Now: the workers are ended, one line, exit 128 + the signal."""
    words = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}[sig]
    bench = Command("bench", "--backends", "numpy", "--steps", "2", "--repeat", "1000", data_dir=mnist_dir)
    bench.wait_for("round 2/1000")
    workers = bench.children()
    assert len(workers) == 2, workers
    code, after = _signal_alone(bench, sig)
    assert code == 128 + sig, bench.lines
    assert after and after[-1] == f"Error: {words}", after
    assert len([a for a in after if not a.startswith("round ")]) == 1, after
    assert not any("Traceback" in line for line in bench.lines), bench.lines
    _wait_gone(workers)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_bench_workers_die_with_a_parent_killed_outright(mnist_dir) -> None:
    """Item 9: a parent that cannot clean up (SIGKILL, the OOM killer) left its workers running (a worker
    in the middle of a long run never reads the closed pipe). Now the kernel ends them
    (PR_SET_PDEATHSIG, set by each worker at start)."""
    bench = Command("bench", "--backends", "numpy", "--steps", "100000", "--repeat", "1", data_dir=mnist_dir)
    bench.wait_for("numpy: ready")
    numpy_worker = min(bench.children(), key=_started)  # the sgemm worker starts after this line
    start = _cpu_ticks(numpy_worker)
    deadline = time.monotonic() + DEADLINE_S
    while _cpu_ticks(numpy_worker) < start + 100:  # a second of CPU: it is inside its 100000 steps
        assert time.monotonic() < deadline and not _gone(numpy_worker), bench.lines
        time.sleep(0.1)
    workers = bench.children()
    code, _ = _signal_alone(bench, signal.SIGKILL)
    assert code == -signal.SIGKILL
    _wait_gone(workers)


def _started(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` so far, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_sighup_on_train_saves_a_checkpoint_and_exits_129(tmp_path: Path, mnist_dir) -> None:
    """Item 9: SIGHUP (the terminal closed) to `train --checkpoint` exited 129 silently, the checkpoint
    up to --checkpoint-every steps old. Now it is handled like SIGTERM: a final checkpoint, one line."""
    from pyflux_mnist.checkpoint import load_checkpoint

    ck = tmp_path / "run.ckpt.npz"
    train = Command(
        "train", "--recipe", "numpy-twolayer", "--hidden", "16", "--steps", "100000",
        "--checkpoint", str(ck), "--checkpoint-every", "100000", data_dir=mnist_dir,
    )  # fmt: skip
    train.wait_for("step ")  # training is under way (its progress lines)
    code, after = _signal_alone(train, signal.SIGHUP)
    assert code == 129, train.lines
    last = after[-1]
    assert last.startswith("Error: hung up (SIGHUP) after step ") and f"checkpoint saved to {ck}" in last
    assert not any("Traceback" in line for line in train.lines), train.lines
    done = load_checkpoint(ck).steps_done
    assert 0 < done < 100000 and f"after step {done} of 100000" in last
