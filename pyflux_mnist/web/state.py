"""What the server holds between requests: the model in use, its pictures, and at most one training run.

Everything here is plain threads and locks, independent of the web framework, so the API tests and the
CLI share it. The training run is a thread calling :func:`pyflux_mnist.training.train` with a progress
callback and a ``stop`` callable (the package's own stop-at-the-next-step mechanism); requests only read
snapshots of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import backend_status
from ..errors import PyfluxError, TrainingInterrupted
from ..model import Model, load_model
from ..recipes import RECIPES
from ..training import TrainResult, check_seed, resolve_recipe, train

#: The most points of a loss curve sent to the page (longer curves are thinned evenly).
CURVE_POINTS = 600


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
    losses, epoch_steps = None, None
    sidecar = losses_path(path)
    if sidecar.exists():
        try:
            with np.load(sidecar, allow_pickle=False) as npz:
                losses = np.asarray(npz["losses"], np.float64)
                epoch_steps = int(npz["epoch_steps"]) or None
        except (OSError, KeyError, ValueError):  # a damaged sidecar only costs the loss curve
            losses, epoch_steps = None, None
    return Loaded(model, version, source, stamp, losses, epoch_steps)


def losses_path(model_path: Path) -> Path:
    """Where the server keeps the loss curve of a model it trained (model files hold no curve)."""
    return model_path.with_suffix(".losses.npz")


def save_trained(result: TrainResult, path: Path) -> None:
    """Save a model the server trained, with its loss curve beside it, atomically."""
    from ..atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(path)
    with atomic_write(losses_path(path)) as f:
        np.savez(f, losses=result.losses, epoch_steps=np.int64(result.epoch_steps or 0))


def thin(steps: np.ndarray, losses: np.ndarray, limit: int = CURVE_POINTS) -> list[list[float]]:
    """``[[step, loss], ...]`` with at most ``limit`` points, evenly spaced, always keeping the last."""
    n = len(losses)
    idx = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64)) if n else []
    return [[int(steps[i]), float(losses[i])] for i in idx]


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
                "backends": [{"name": b, "reason": reason} for b, reason in status.items()],
            }
        )
    return {"recipes": recipes}


class TrainingJob:
    """One training run in a thread; :meth:`snapshot` is what the page is told about it."""

    def __init__(
        self,
        recipe: str,
        backend: str,
        seed: int,
        steps: int | None,
        epochs: int | None,
        data: Any,
        on_done: Callable[[TrainResult], int],
    ) -> None:
        self.recipe_name, self.backend, self.seed = recipe, backend, seed
        self.recipe = resolve_recipe(recipe, steps=steps, epochs=epochs)  # bad values fail here, as a 400
        check_seed(seed)
        self._data = data
        self._on_done = on_done
        self._lock = threading.Lock()
        self._steps: list[int] = []
        self._losses: list[float] = []
        self.total = 0
        self.state = "starting"  # starting, running, done, stopped, failed
        self.message = ""
        self.model_version: int | None = None
        self.started = time.time()
        self.stop_requested = False
        self.thread = threading.Thread(target=self._run, name="pyflux-mnist-train", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _progress(self, done: int, total: int, loss: float) -> None:
        with self._lock:
            self.state, self.total = "running", total
            self._steps.append(done)
            self._losses.append(loss)

    def _run(self) -> None:
        try:
            data = self._data() if callable(self._data) else self._data
            result = train(
                self.recipe,
                backend=self.backend,
                data=data,
                seed=self.seed,
                on_progress=self._progress,
                stop=lambda: self.stop_requested,
            )
            version = self._on_done(result)
            with self._lock:
                self.state, self.model_version = "done", version
                self.message = f"test accuracy {result.test_accuracy:.4f}; now using this model"
        except TrainingInterrupted:
            with self._lock:
                self.state = "stopped"
                self.message = f"stopped after step {self._steps[-1] if self._steps else 0}; model unchanged"
        except PyfluxError as e:
            with self._lock:
                self.state, self.message = "failed", str(e)
        except Exception as e:  # a bug must not leave the job "running" forever
            with self._lock:
                self.state, self.message = "failed", f"internal error: {type(e).__name__}: {e}"

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        """The job's state and the (step, loss) points from index ``since`` on."""
        with self._lock:
            points = [[s, loss] for s, loss in zip(self._steps[since:], self._losses[since:], strict=True)]
            return {
                "state": self.state,
                "recipe": self.recipe_name,
                "backend": self.backend,
                "step": self._steps[-1] if self._steps else 0,
                "total": self.total,
                "loss": self._losses[-1] if self._losses else None,
                "points": points,
                "next": since + len(points),
                "message": self.message,
                "model_version": self.model_version,
                "seconds": round(time.time() - self.started, 1),
            }
