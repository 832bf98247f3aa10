"""One backend of ``pyflux-mnist bench``, in its own process: ``python -m pyflux_mnist.bench_worker``.

The parent (:mod:`pyflux_mnist.bench`) sets the thread variables in this process's environment before it
starts, so they are in place before NumPy, torch or Julia load their BLAS. It then talks to us in JSON
lines: one configuration line, then commands (``run`` n steps, ``sgemm``, ``finish``), each answered by one
line. The answers go to the original stdout; everything else anyone prints goes to stderr.

Phases, each timed on its own: data (load + prepare, the same for every backend), import (the backend's
library: ``import torch``; for Flux ``juliacall`` starting Julia, then ``using Flux``), init (the trainer
receives weights and data), first step (for Flux: compilation), then the warm steps the parent asks for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import get_backend
from .bench_bound import BoundProbe
from .blas import thread_pools  # threadpoolctl loads no library itself: the thread variables still apply
from .child import protocol_stream, send
from .errors import BackendUnavailable, unexpected_line
from .init import run_start
from .mnist import load_mnist
from .prepare import prepare
from .spec import Recipe
from .training import evaluate as evaluate_params

if TYPE_CHECKING:
    from .backends.base import Backend

#: The square sgemm the roofline row measures (n × n × n, float32): 17 GFLOP, about 0.1 s at peak.
SGEMM_N = 2048


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


class Worker:
    def __init__(self, config: dict[str, Any], out) -> None:
        self.config = config
        self.out = out
        self.threads = int(config["threads"])
        self.trainer: Any = None
        self._probe: Any = None
        self._probe_key: str | None = None

    def send(self, **message: Any) -> None:
        send(self.out, **message)

    # --- the roofline: a square sgemm with the same BLAS and thread count -----------------------------

    def sgemm(self) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        A = rng.random((SGEMM_N, SGEMM_N), dtype=np.float32)
        B = rng.random((SGEMM_N, SGEMM_N), dtype=np.float32)
        C = np.empty_like(A)
        np.matmul(A, B, out=C)  # warm-up: thread pool start, pages touched
        best = min(self._timed(lambda: np.matmul(A, B, out=C)) for _ in range(3))
        return {"gflops": 2 * SGEMM_N**3 / best / 1e9, "seconds": best}

    def bound(self, recipe: dict[str, Any], batch: int) -> dict[str, Any]:
        """The products of one step on the model's own shapes, and the copy bandwidth at the step's working
        set (:mod:`pyflux_mnist.bench_bound`); the arrays are kept for the next round."""
        key = json.dumps([recipe, batch], sort_keys=True)
        if self._probe_key != key:
            self._probe = None  # the old arrays go before the new ones come
            self._probe = BoundProbe(Recipe.from_dict(recipe), batch, self.threads)
            self._probe_key = key
        return self._probe.measure()

    @staticmethod
    def _timed(f) -> float:
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    # --- a backend ------------------------------------------------------------------------------------

    def start_backend(self) -> dict[str, Any]:
        name = self.config["backend"]
        recipe = Recipe.from_dict(self.config["recipe"])
        setup: dict[str, float] = {}

        t0 = time.perf_counter()
        data = load_mnist(self.config.get("data_dir"), offline=self.config.get("offline") or None)
        self.prepared = prepare(data, recipe.data)
        t1 = time.perf_counter()
        rss_data = _peak_rss_mb()

        self.backend = get_backend(name)  # a missing package: BackendUnavailable, an "unavailable" row
        threads = self._import_backend(self.backend, setup)
        point = self.point(self.config["recipe"], self.config.get("n_samples"))
        return {
            **point,
            "setup": {**setup, **point["setup"]},
            "version": self.backend.version(),
            "data_seconds": t1 - t0,
            "rss_after_data_mb": rss_data,
            "threads": threads,
        }

    def point(self, recipe_dict: dict[str, Any], n_samples: int | None) -> dict[str, Any]:
        """A fresh trainer for ``recipe`` on the first ``n_samples`` training samples (all if None), from
        the seed's weights, and its first step, timed (``bench --sweep`` sends one per point)."""
        recipe = Recipe.from_dict(recipe_dict)
        X, Y = self.prepared.X_train, self.prepared.Y_train
        if n_samples is not None:
            X, Y = X[:, :n_samples], Y[:, :n_samples]
        self.trainer = None  # the previous point's trainer and its buffers go first
        self.recipe = recipe
        params, sched = run_start(recipe, X.shape[1], int(self.config["seed"]))
        self.batches = iter(sched)
        t2 = time.perf_counter()
        self.trainer = self.backend.trainer(recipe, params, X, Y)
        setup = {"init": time.perf_counter() - t2}
        t3 = time.perf_counter()
        first = self.trainer.run([next(self.batches)])
        setup["first_step"] = time.perf_counter() - t3
        self.last_loss = float(first[-1])
        digest = hashlib.sha256()
        for p in params:
            digest.update(np.ascontiguousarray(p, dtype=np.float32).tobytes())
        return {
            "event": "ready",
            "setup": setup,
            "first_loss": self.last_loss,
            "init_sha256": digest.hexdigest()[:16],
            "peak_rss_mb": _peak_rss_mb(),
        }

    def _import_backend(self, backend: Backend, setup: dict[str, float]) -> dict[str, Any]:
        """Import the backend's library, timed, and pin and report its threads."""
        setup.update(backend.load_library())
        backend.pin_threads(self.threads)
        return {"requested": self.threads, **backend.threads(), "blas": thread_pools()}

    def run(self, steps: int) -> dict[str, Any]:
        batches = [next(self.batches) for _ in range(steps)]  # drawn before the clock starts
        t0 = time.perf_counter()
        losses = self.trainer.run(batches)
        seconds = time.perf_counter() - t0
        self.last_loss = float(losses[-1])
        return {"event": "ran", "seconds": seconds, "steps": steps, "last_loss": self.last_loss}

    def finish(self, evaluate: bool = True) -> dict[str, Any]:
        if not evaluate:  # a sweep: the memory is what is asked
            return {"event": "finished", "final_loss": self.last_loss, "peak_rss_mb": _peak_rss_mb()}
        params = self.trainer.parameters()
        train_acc, test_acc, _ = evaluate_params(self.backend, self.recipe, params, self.prepared)
        return {
            "event": "finished",
            "final_loss": self.last_loss,
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "peak_rss_mb": _peak_rss_mb(),
        }


def main() -> int:
    try:
        return _serve()
    except BrokenPipeError:  # the parent is gone (Ctrl-C there): nobody to answer, nothing to report
        os._exit(1)


def die_with_parent() -> None:
    """Ask the kernel (Linux) to kill us when the parent dies, however it dies (even SIGKILL): a worker runs
    in its own session, so nothing else would end it, and at ``--steps 100000`` an orphan lives for hours."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)


def _serve() -> int:
    die_with_parent()
    out = protocol_stream()
    line = sys.stdin.readline()
    if not line:  # the parent is gone already
        return 1
    config = json.loads(line)
    if config.get("parent") not in (None, os.getppid()):  # it died before die_with_parent took effect
        return 1
    worker = Worker(config, out)
    try:
        if config["backend"] == "sgemm":
            worker.send(event="ready", version=f"numpy {np.__version__}", threads={"blas": thread_pools()})
        else:
            worker.send(**worker.start_backend())
    except Exception as e:
        status = "unavailable" if isinstance(e, BackendUnavailable) else "error"
        if status == "error" and config.get("verbose"):  # else the parent's one line says it
            traceback.print_exc()
        worker.send(event=status, reason=unexpected_line(e) if status == "error" else str(e))
        return 0
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["cmd"] == "run":
                worker.send(**worker.run(int(command["steps"])))
            elif command["cmd"] == "sgemm":
                worker.send(event="sgemm", **worker.sgemm())
            elif command["cmd"] == "rss":
                worker.send(event="rss", peak_rss_mb=_peak_rss_mb())
            elif command["cmd"] == "point":
                worker.send(**worker.point(command["recipe"], command.get("n_samples")))
            elif command["cmd"] == "bound":
                worker.send(event="bound", **worker.bound(command["recipe"], int(command["batch"])))
            elif command["cmd"] == "finish":
                if config["backend"] != "sgemm":
                    worker.send(**worker.finish(command.get("evaluate", True)))
                else:
                    worker.send(event="finished", peak_rss_mb=_peak_rss_mb())
                return 0
        except Exception as e:
            if config.get("verbose"):
                traceback.print_exc()
            worker.send(event="error", reason=unexpected_line(e))
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
