"""What the server holds between requests: the model in use, its pictures, and at most one training run.

Everything here is plain threads, locks and one child process, independent of the web framework. The
training run is a child process running :func:`pyflux_mnist.training.train_run` (see
:mod:`~pyflux_mnist.web.train_worker`); a thread reads its progress, and requests only read snapshots.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..backends import backend_status
from ..errors import ModelFileError, PyfluxError
from ..model import Model, load_model
from ..recipes import DEFAULT_RECIPE, RECIPES, recipe_label, recipe_overrides
from ..reproduce import total_steps
from ..run import Run
from ..safe_npz import member_header, open_npz, read_array
from ..spec import MAX_STEPS
from ..training import TrainResult
from ..userpaths import escape


class BusyError(PyfluxError):
    """A training run is already going (the API answers 409)."""


@dataclass
class Loaded:
    """A model in use, with what the page shows about it."""

    model: Model
    version: int  # bumps at every switch, so the page can tell a new model from the old one
    source: str  # "file", "trained here", "last trained here"
    trained_at: str  # ISO time, or "" when unknown
    losses: np.ndarray | None = None  # (steps,) when this server trained it (a model file has none)
    epoch_steps: int | None = None
    pictures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG, made on first request

    def card(self) -> dict[str, Any]:
        """The model's card: recipe, backend, accuracies, size, when it was trained."""
        m, r = self.model, self.model.recipe
        return {
            "version": self.version,
            "recipe": r.name,
            "label": recipe_label(r),  # the name with what was changed in it: "flux-tutorial (steps 40)"
            "sizes": list(m.spec.sizes),
            "activations": list(m.spec.activations),
            "parameters": int(sum(p.size for p in m.params)),
            "backend": m.meta.get("backend"),
            "steps": m.meta.get("steps"),
            "seed": m.meta.get("seed"),
            "train_accuracy": m.meta.get("train_accuracy"),
            "test_accuracy": m.meta.get("test_accuracy"),
            "final_loss": m.meta.get("final_loss"),
            "trained_at": self.trained_at,
            "source": self.source,
            "has_losses": self.losses is not None,
        }


def file_loaded(path: Path, source: str = "file", version: int = 1) -> Loaded:
    """A model file, with its modification time as 'when trained' and losses from a sidecar if present."""
    model = load_model(path)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    losses, epoch_steps = read_loss_curve(losses_path(path))
    return Loaded(model, version, source, stamp, losses, epoch_steps)


def read_loss_curve(sidecar: Path) -> tuple[np.ndarray | None, int | None]:
    """The losses and steps per epoch saved beside a model (:func:`save_trained`), read through the safe
    container (a regular file, bounded sizes, exact dtypes and shapes). A missing sidecar is simply no
    curve; any other failure is no curve too, said once on stderr: it only costs the picture."""
    if not os.path.lexists(sidecar):
        return None, None
    try:
        with open_npz(sidecar, "loss curve", meta=False) as npz:
            if set(npz.files) != {"losses", "epoch_steps"}:
                raise ModelFileError(f"{sidecar}: expected entries losses, epoch_steps")
            shape, _ = member_header(npz, "losses", sidecar, 8 * MAX_STEPS)
            if len(shape) != 1:
                raise ModelFileError(f"{sidecar}: losses should be one row, found shape {shape}")
            losses = read_array(npz, "losses", np.float64, shape, sidecar)
            epoch_steps = int(read_array(npz, "epoch_steps", np.int64, (), sidecar))
    except ModelFileError as e:
        print(escape(f"pyflux-mnist: no loss curve: {e}"), file=sys.stderr)
        return None, None
    return losses, (epoch_steps if 0 < epoch_steps <= MAX_STEPS else None)


def losses_path(model_path: Path) -> Path:
    """Where the server keeps the loss curve of a model it trained (model files hold no curve)."""
    return model_path.with_suffix(".losses.npz")


def save_trained(result: TrainResult, path: Path) -> None:
    """Save a model the server trained, with its loss curve beside it, atomically."""

    path.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(path)
    with atomic_write(losses_path(path)) as f:
        np.savez(
            f, losses=np.asarray(result.losses, np.float64), epoch_steps=np.int64(result.epoch_steps or 0)
        )


def training_options() -> dict[str, Any]:
    """Recipes, and for each the backends with ``None`` or the reason it cannot run it here."""
    recipes = []
    for name, r in RECIPES.items():
        status = backend_status(r)
        recipes.append(
            {
                "name": name,
                "sizes": list(r.model.sizes),
                "steps": r.steps,
                "epochs": r.epochs,
                "batch_size": r.batch_size,
                "total_steps": total_steps(r),  # what an epoch-based recipe's epochs come to
                "backends": [{"name": b, "reason": reason} for b, reason in status.items()],
            }
        )
    return {"recipes": recipes, "default": DEFAULT_RECIPE}


# The training child: reads its spec as JSON on stdin, writes JSON lines of progress and result on stdout.
WORKER = [sys.executable, "-m", "pyflux_mnist.web.train_worker"]
RUNNING = ("starting", "running")  # a job's states before it ends: done, stopped or failed
_ids = itertools.count(1)
STDERR_TAIL = 4096  # bytes of the child's stderr kept for the message when it dies without a result
#: Loss points kept of a run: when there would be more, every other one is dropped (and from then on
#: only every other one arriving is kept), so a snapshot costs the same after a minute or ten hours.
MAX_POINTS = 2000
#: Seconds Stop waits for the child to end after SIGINT before SIGTERM, and after SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0


class TrainingJob:
    """One training run in a child process (see :mod:`~pyflux_mnist.web.train_worker`), followed by a
    thread that reads its progress; :meth:`snapshot` is what the page is told about it."""

    def __init__(
        self, run: Run, data_dir: str | None, output: Path, on_done: Callable[[Path], tuple[int, str]]
    ) -> None:
        self.recipe_name, self.backend, self.seed = run.recipe.name, run.backend, run.seed
        changed = recipe_overrides(run.recipe)
        # as asked (None: the recipe's), for the page's form
        self.asked = {k: changed.get(k) for k in ("steps", "epochs")}
        self.id = next(_ids)  # tells one run from the next (a page keeps a run's points by it)
        self.spec = {"run": run.to_json(), "data_dir": data_dir, "output": str(output)}
        self.output = output
        self._on_done = on_done
        self._lock = threading.Lock()
        # Points kept (see MAX_POINTS): the arrival number of each (the events' cursor), its step, its loss.
        self._arrivals: list[int] = []
        self._steps: list[int] = []
        self._losses: list[float] = []
        self._arrived = 0  # progress events so far
        self._stride = 1  # keep one arriving point in this many
        self._last: tuple[int, float] | None = None  # the latest point, kept or not
        self.revision = 0  # bumps at every change: an event stream builds a message only when it moved
        self._stop_asked = False
        self._forced = False  # Stop had to send SIGTERM or SIGKILL
        self.total = 0
        self.state = "starting"  # starting, running, done, stopped, failed
        self.message = ""
        self.model_version: int | None = None
        self.started = time.time()
        self.process: subprocess.Popen[str] | None = None
        self.thread = threading.Thread(target=self._follow, name="pyflux-mnist-train", daemon=True)

    def start(self) -> None:
        # stderr goes to a file, not a pipe: the follower reads stdout to its end first, and a child that
        # wrote more than a pipe holds to stderr (Julia's first-use output, say) would block forever.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _stderr_tail when the run ends)
        self.process = subprocess.Popen(
            WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(self.spec))
        self.process.stdin.close()
        self.thread.start()

    def stop(self) -> None:
        """Ctrl-C for the run: it stops at the next step boundary, as ``train`` does in a terminal.

        A child that does not end within STOP_GRACE_S (hung in a native library, say) gets SIGTERM, then
        after as long again SIGKILL: Stop always ends the run.
        """
        self._stop_asked = True
        self._signal(signal.SIGINT, signal.SIGTERM)

    def _signal(self, sig: signal.Signals, then: signal.Signals | None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self._forced = self._forced or sig != signal.SIGINT
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        if then is not None:
            later = signal.SIGKILL if then == signal.SIGTERM else None
            timer = threading.Timer(STOP_GRACE_S, self._signal, args=(then, later))
            timer.daemon = True
            timer.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def _follow(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        last: dict[str, Any] = {}
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress":
                self._add(int(event["step"]), float(event["loss"]), int(event["total"]))
            else:
                last = event
        code = self.process.wait()
        stderr = self._stderr_tail()
        kind = last.get("event")
        if kind == "done":
            try:
                version, kept = self._on_done(self.output)
            except PyfluxError as e:
                self._finish("failed", f"the trained model cannot be loaded: {e}")
                return
            with self._lock:
                self.model_version = version
            self._finish("done", f"test accuracy {last['test_accuracy']:.4f}; now using this model; {kept}")
        elif kind == "stopped" or (self._stop_asked and kind != "error"):
            # Stopped before the child could say so (during its start) or ended by SIGTERM/SIGKILL: stopped.
            step = self._last[0] if self._last else 0
            forced = " (it did not stop by itself and was ended)" if self._forced else ""
            self._finish("stopped", f"stopped after step {step}{forced}; the model in use is unchanged")
        elif kind == "error":
            self._finish("failed", str(last.get("message")))
        else:
            tail = stderr.strip().splitlines()[-1:] or ["no message"]
            self._finish("failed", f"the training process ended without a result (exit {code}): {tail[0]}")

    def _stderr_tail(self) -> str:
        with self._stderr:
            size = self._stderr.seek(0, 2)
            self._stderr.seek(max(0, size - STDERR_TAIL))
            return self._stderr.read().decode("utf-8", "replace")

    def _add(self, step: int, loss: float, total: int) -> None:
        """One progress point: kept when its arrival number is a multiple of the stride; past MAX_POINTS,
        every other point kept is dropped and the stride doubles."""
        with self._lock:
            self.state, self.total, self._last = "running", total, (step, loss)
            if self._arrived % self._stride == 0:
                self._arrivals.append(self._arrived)
                self._steps.append(step)
                self._losses.append(loss)
                if len(self._arrivals) > MAX_POINTS:
                    self._stride *= 2
                    keep = [i for i, a in enumerate(self._arrivals) if a % self._stride == 0]
                    self._arrivals = [self._arrivals[i] for i in keep]
                    self._steps = [self._steps[i] for i in keep]
                    self._losses = [self._losses[i] for i in keep]
            self._arrived += 1
            self.revision += 1

    def _finish(self, state: str, message: str) -> None:
        with self._lock:
            self.state, self.message = state, message
            self.revision += 1

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        """The job's state and the (step, loss) points kept that arrived at or after ``since`` (at most
        MAX_POINTS); ``next`` is the cursor for the following call."""
        with self._lock:
            first = bisect.bisect_left(self._arrivals, since)
            points = [[s, loss] for s, loss in zip(self._steps[first:], self._losses[first:], strict=True)]
            return {
                "id": self.id,
                "state": self.state,
                "running": self.state in RUNNING,
                "recipe": self.recipe_name,
                "backend": self.backend,
                "seed": self.seed,
                **self.asked,
                "step": self._last[0] if self._last else 0,
                "total": self.total,
                "loss": self._last[1] if self._last else None,
                "points": points,
                "next": self._arrived,
                "message": self.message,
                "model_version": self.model_version,
                "seconds": round(time.time() - self.started, 1),
            }
