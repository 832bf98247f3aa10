"""``train()``: the one training loop every backend and command goes through.

Python prepares the data, draws the initial weights and decides the batch order; the backend does the
arithmetic. So a recipe, a seed and a backend name determine the run completely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import Backend, get_backend
from .errors import DivergedError, SpecError
from .init import init_params
from .model import Model
from .prepare import Prepared, prepare, schedule
from .recipes import get_recipe
from .spec import Recipe

#: A loss this many times the first step's counts as diverged even while it is still finite.
EXPLODED = 1e4

#: Called after each chunk of steps with (steps done, total steps, latest loss).
ProgressFn = Callable[[int, int, float], None]


@dataclass
class TrainResult:
    """What a training run produced."""

    model: Model
    losses: np.ndarray  # (steps,) loss of each step's batch, before that step's update
    train_accuracy: float  # on the (un-augmented) training images
    test_accuracy: float
    test_predictions: np.ndarray  # (10000,) onecold labels 0..9, computed by the backend
    seconds: dict[str, float] = field(default_factory=dict)  # setup, train, evaluate, total
    backend: str = "numpy"
    seed: int = 0
    epoch_steps: int | None = None  # steps per epoch, when the recipe counts epochs

    @property
    def recipe(self) -> Recipe:
        return self.model.recipe

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1]) if len(self.losses) else math.nan

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints with ``--json``."""
        return {
            "backend": self.backend,
            "recipe": self.recipe.name,
            "seed": self.seed,
            "steps": len(self.losses),
            "seconds": round(self.seconds.get("total", math.nan), 3),
            "timings": {k: round(v, 4) for k, v in self.seconds.items()},
            "final_loss": self.final_loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
        }


def resolve_recipe(
    recipe: str | Recipe = "flux-tutorial",
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    hidden: int | Sequence[int] | None = None,
) -> Recipe:
    """A named recipe with the user's overrides applied (and checked)."""
    r = get_recipe(recipe)
    changes: dict[str, Any] = {}
    if steps is not None and epochs is not None:
        raise SpecError("give either steps or epochs, not both")
    if steps is not None:
        changes.update(steps=_positive("steps", steps), epochs=0)
    if epochs is not None:
        changes.update(epochs=_positive("epochs", epochs))
    if batch_size is not None:
        if batch_size < 0:
            raise SpecError(f"batch size must be >= 0 (0 = full batch), got {batch_size}")
        changes["batch_size"] = batch_size
    if lr is not None:
        if not (lr > 0 and math.isfinite(lr)):
            raise SpecError(f"learning rate must be a positive number, got {lr}")
        changes["optimizer"] = {"lr": lr}
    if hidden is not None:
        widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        if len(widths) != len(r.model.sizes) - 2:
            raise SpecError(
                f"recipe {r.name!r} has {len(r.model.sizes) - 2} hidden layer(s); got {len(widths)} width(s)"
            )
        changes["model"] = {"sizes": (784, *widths, 10)}
    return r.replace(**changes) if changes else r


def _positive(name: str, value: int) -> int:
    if value <= 0:
        raise SpecError(f"{name} must be a positive integer, got {value}")
    return value


def train(
    recipe: str | Recipe = "flux-tutorial",
    backend: str | Backend = "numpy",
    data: Any = None,
    seed: int = 0,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    hidden: int | Sequence[int] | None = None,
    initial_params: list[np.ndarray] | None = None,
    on_progress: ProgressFn | None = None,
    data_dir: str | None = None,
    offline: bool | None = None,
    verify: bool = True,
) -> TrainResult:
    """Train a recipe on MNIST and evaluate it.

    ``data`` is an :class:`~pyflux_mnist.mnist.MnistData` (or ``None`` to load MNIST from ``data_dir``,
    ``$PYFLUX_MNIST_DATA``, the cache or a download). ``initial_params`` replaces the seeded initial
    weights (the parity tests start every backend from the same ones).
    """
    t_start = time.perf_counter()
    r = resolve_recipe(recipe, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden)
    engine = backend if isinstance(backend, Backend) else get_backend(backend)
    if data is None:
        from .mnist import load_mnist

        data = load_mnist(data_dir, offline=offline, verify=verify)
    prepared = prepare(data, r.data)

    # One seed drives both random streams, kept apart so changing the batch order never changes the init.
    init_seq, batch_seq = np.random.SeedSequence(seed).spawn(2)
    params = (
        initial_params
        if initial_params is not None
        else init_params(r.model, r.init, np.random.default_rng(init_seq))
    )
    sched = schedule(r, prepared.X_train.shape[1], batch_seq)

    t0 = time.perf_counter()
    if r.rule == "rashid":  # not a gradient: the NumPy backend's own trainer (pyflux_mnist.rashid)
        from .rashid import rashid_trainer

        trainer = rashid_trainer(engine, r, params, prepared.X_train, prepared.Y_train)
    else:
        trainer = engine.trainer(r, params, prepared.X_train, prepared.Y_train)
    t1 = time.perf_counter()
    chunk = max(1, getattr(trainer, "chunk_size", 0), engine.chunk_size)
    losses = run_schedule(trainer, sched, chunk=chunk, on_progress=on_progress)
    t2 = time.perf_counter()
    final = trainer.parameters()
    train_acc, test_acc, test_pred = evaluate(engine, r, final, prepared)
    t3 = time.perf_counter()

    seconds = {"setup": t1 - t0, "train": t2 - t1, "evaluate": t3 - t2, "total": t3 - t_start}
    meta = {
        "backend": engine.name,
        "seed": seed,
        "steps": len(losses),
        "final_loss": float(losses[-1]),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
    }
    return TrainResult(
        model=Model(r, final, meta),
        losses=losses,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        test_predictions=test_pred,
        seconds=seconds,
        backend=engine.name,
        seed=seed,
        epoch_steps=sched.steps_per_epoch,
    )


def run_schedule(trainer, sched, chunk: int = 1, on_progress: ProgressFn | None = None) -> np.ndarray:
    """Feed the schedule's batches to the trainer ``chunk`` steps at a time.

    Stops with :class:`DivergedError` on a NaN or Inf loss, or one ``EXPLODED`` times the first step's.
    """
    total = sched.total_steps
    losses = np.empty(total, dtype=np.float64)
    done = 0
    batches: list[np.ndarray | None] = []
    for batch in sched:
        batches.append(batch)
        if len(batches) == chunk or done + len(batches) == total:
            chunk_losses = trainer.run(batches)
            losses[done : done + len(batches)] = chunk_losses
            limit = EXPLODED * max(float(losses[0]), 1.0)
            bad = np.flatnonzero(~(np.abs(chunk_losses) <= limit))  # NaN fails every comparison
            if bad.size:
                raise DivergedError(
                    f"training diverged: loss is {chunk_losses[bad[0]]:.4g} at step {done + bad[0] + 1}; "
                    "try a lower learning rate (--lr)"
                )
            done += len(batches)
            batches = []
            if on_progress is not None:
                on_progress(done, total, float(losses[done - 1]))
    return losses[:done]


def evaluate(
    engine: Backend, r: Recipe, params: list[np.ndarray], prepared: Prepared
) -> tuple[float, float, np.ndarray]:
    """Train and test accuracy, with the backend's own predictions (Flux: ``onecold`` in Julia)."""
    train_pred = engine.predict(r.model, params, prepared.X_eval_train)
    test_pred = np.asarray(engine.predict(r.model, params, prepared.X_test), dtype=np.uint8)
    train_acc = float(np.mean(train_pred == prepared.y_eval_train))
    test_acc = float(np.mean(test_pred == prepared.y_test))
    return train_acc, test_acc, test_pred
