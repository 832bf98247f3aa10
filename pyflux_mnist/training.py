"""``train()``: the one training loop every backend and command goes through.

Python prepares the data, draws the initial weights and decides the batch order; the backend does the
arithmetic. So a recipe, a seed and a backend name determine the run completely.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import REFERENCE, Backend, Trainer, load_backend
from .checkpoint import DEFAULT_EVERY, Checkpoint, StopFlag, check_same_data, data_fingerprint
from .checkpoint import save_checkpoint as _save_checkpoint
from .errors import DivergedError, SpecError, TrainingInterrupted
from .init import run_start
from .mnist import load_mnist
from .model import Model
from .prepare import Prepared, Schedule, prepare
from .progress_display import progress_for
from .recipes import DEFAULT_RECIPE, recipe_label, recipe_overrides
from .run import Overrides, Run, build_run
from .spec import MAX_STEPS, Recipe

if TYPE_CHECKING:
    from .mnist import MnistData

#: What to do when the loss goes up or diverges (said by the training loop and by ``train``'s warning).
LOWER_LR = "try a lower learning rate (--lr)"
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
    timings: dict[str, float] = field(default_factory=dict)  # seconds: setup, train, evaluate, total
    backend: str = REFERENCE
    seed: int = 0
    epoch_steps: int | None = None  # steps per epoch, when the recipe counts epochs

    def __repr__(self) -> str:  # one line, not the weights and every loss
        return (
            f"TrainResult({recipe_label(self.recipe)}, backend={self.backend!r}, seed={self.seed}, "
            f"steps={len(self.losses)}, test_accuracy={self.test_accuracy:.4f}, seconds={self.seconds:.1f})"
        )

    def _repr_html_(self) -> str:  # Jupyter: a card with the loss curve and the weights
        from .rich_display import result_html

        return result_html(self)

    def _repr_png_(self) -> bytes:  # Jupyter front ends without HTML: the loss curve
        from .rich_display import result_png

        return result_png(self)

    @property
    def recipe(self) -> Recipe:
        return self.model.recipe

    @property
    def seconds(self) -> float:
        """The whole run's wall time (as ``seconds`` in the CLI's JSON); the parts are in :attr:`timings`."""
        return self.timings.get("total", math.nan)

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
            "overrides": recipe_overrides(self.recipe),
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "final_loss": self.final_loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
        }


def train(
    recipe: str | Recipe = DEFAULT_RECIPE,
    backend: str | None = None,
    data: MnistData | None = None,
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
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike[str] | Checkpoint | None = None,
) -> TrainResult:
    """Train a recipe on MNIST and evaluate it: :func:`~pyflux_mnist.run.build_run` then :func:`train_run`.

    ``backend``: a name (default: the reference, NumPy; when resuming, the checkpoint's). ``data`` is an
    :class:`~pyflux_mnist.mnist.MnistData` (or ``None`` to load MNIST from ``data_dir``,
    ``$PYFLUX_MNIST_DATA``, the cache or a download). ``steps``, ``epochs``, ``batch_size``, ``lr`` and
    ``hidden`` change the recipe. ``initial_params`` replaces the seeded initial weights (the parity tests
    start every backend from the same ones). ``on_progress(done, total, loss)`` is called after each chunk
    of steps; without it, a notebook or a terminal shows a progress bar and anything else (a log, a pipe)
    nothing.

    ``checkpoint``: write a checkpoint there every ``checkpoint_every`` steps (default
    :data:`~pyflux_mnist.checkpoint.DEFAULT_EVERY`) and when Ctrl-C stops the run. ``resume``: continue
    a checkpoint (a path or a :class:`Checkpoint`); the recipe and seed are the checkpoint's, and the run
    ends exactly as the uninterrupted one would have. Ctrl-C stops at the next step boundary with
    :class:`TrainingInterrupted`.
    """
    t_start = time.perf_counter()
    changes = Overrides(steps, epochs, batch_size, lr, hidden)  # type: ignore[arg-type]  # checked there
    if resume is not None and initial_params is not None:
        raise SpecError("a resumed run takes its recipe from the checkpoint; give no overrides")
    run = build_run(recipe, backend, seed, changes, resume)
    if data is None:
        data = load_mnist(data_dir, offline=offline, verify=verify)
    return train_run(
        run, data, on_progress=on_progress, checkpoint=checkpoint, every=checkpoint_every,
        initial_params=initial_params, t_start=t_start,
    )  # fmt: skip


def train_run(
    run: Run,
    data: MnistData,
    *,
    on_progress: ProgressFn | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    every: int = 0,
    initial_params: list[np.ndarray] | None = None,
    t_start: float | None = None,
) -> TrainResult:
    """Train a checked :class:`~pyflux_mnist.run.Run` on ``data`` and evaluate it: nothing is looked up
    or checked again, except what needs the data (the batch size, the run's length, a checkpoint's fit).

    ``checkpoint``: write one there every ``every`` steps (0: :data:`~pyflux_mnist.checkpoint.DEFAULT_EVERY`)
    and when Ctrl-C stops the run.
    """
    t_start = time.perf_counter() if t_start is None else t_start
    every = (every or DEFAULT_EVERY) if checkpoint is not None else 0
    r, ck = run.recipe, run.resume
    engine = load_backend(run.backend)
    plan = _plan(run, prepare(data, r.data), initial_params)

    t0 = time.perf_counter()
    trainer = engine.trainer(r, plan.params, plan.prepared.X_train, plan.prepared.Y_train)
    if ck is not None:
        trainer.load_optimizer_state(ck.optimizer_state)
    t1 = time.perf_counter()
    label, total = f"{recipe_label(r)} [{engine.name}]", plan.schedule.total_steps
    with progress_for(on_progress, label, total) as progress:  # a bar where a person watches
        losses = _run(trainer, plan, every, checkpoint, progress)
    t2 = time.perf_counter()
    final = trainer.parameters()
    train_acc, test_acc, test_pred = evaluate(engine, r, final, plan.prepared)
    t3 = time.perf_counter()

    meta = {
        "backend": engine.name,
        "overrides": recipe_overrides(r),
        "seed": run.seed,
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
        timings={"setup": t1 - t0, "train": t2 - t1, "evaluate": t3 - t2, "total": t3 - t_start},
        backend=engine.name,
        seed=run.seed,
        epoch_steps=plan.schedule.steps_per_epoch,
    )


@dataclass
class _Plan:
    """A run on its data, decided before any step: where it starts and the batch order."""

    run: Run
    prepared: Prepared
    params: list[np.ndarray]  # the starting weights: drawn from the seed, given, or the checkpoint's
    schedule: Schedule
    fingerprint: str  # of the training labels, so a checkpoint is only resumed on the same data


def _plan(run: Run, prepared: Prepared, initial_params: list[np.ndarray] | None) -> _Plan:
    """Check what needs the data (batch size, length, a checkpoint that fits) and fix where it starts."""
    r, ck = run.recipe, run.resume
    n_train = prepared.X_train.shape[1]
    if r.batch_size > n_train:
        raise SpecError(f"batch size {r.batch_size} is larger than the {n_train} training samples")
    start = run_start(r, n_train, run.seed)
    sched = start.schedule
    if sched.total_steps > MAX_STEPS:
        raise SpecError(f"{sched.total_steps} steps is more than this package runs ({MAX_STEPS})")
    fingerprint = data_fingerprint(prepared.y_train, prepared.X_train)
    params = start.params if initial_params is None else initial_params
    if ck is not None:
        check_same_data(ck, sched.total_steps, fingerprint)
        params = ck.params
    return _Plan(run, prepared, params, sched, fingerprint)


def _run(
    trainer: Trainer,
    plan: _Plan,
    every: int,
    checkpoint: str | os.PathLike[str] | None,
    on_progress: ProgressFn | None,
) -> np.ndarray:
    """The steps, under Ctrl-C's stop flag: checkpoints every ``every`` steps and on a stop, which then
    ends the run with :class:`TrainingInterrupted`."""
    run, total = plan.run, plan.schedule.total_steps

    def save_checkpoint(losses: np.ndarray) -> None:
        assert checkpoint is not None  # only called when there is somewhere to save
        state = Checkpoint(
            run.recipe, trainer.parameters(), trainer.optimizer_state(), losses, run.seed, run.backend,
            total, plan.fingerprint, every,
        )  # fmt: skip
        _save_checkpoint(checkpoint, state)

    stop = StopFlag()
    with stop.active():
        losses = run_schedule(
            trainer,
            plan.schedule,
            chunk=trainer.chunk_size,
            on_progress=on_progress,
            done_losses=None if run.resume is None else run.resume.losses,
            every=every,
            on_checkpoint=save_checkpoint,
            stop=lambda: stop.requested,
        )
        if len(losses) < total:
            where = f"{stop.what} after step {len(losses)} of {total}"
            if checkpoint is None:  # what to do about it is the caller's to say (see TrainingInterrupted)
                raise TrainingInterrupted(
                    f"{where}; nothing saved", len(losses), total, exit_code=stop.exit_code
                )
            save_checkpoint(losses)
            raise TrainingInterrupted(
                f"{where}; checkpoint saved to {checkpoint} (continue with --resume {checkpoint})",
                len(losses),
                total,
                str(checkpoint),
                exit_code=stop.exit_code,
            )
    return losses


def run_schedule(
    trainer: Trainer,
    sched: Schedule,
    chunk: int = 1,
    on_progress: ProgressFn | None = None,
    *,
    done_losses: np.ndarray | None = None,
    every: int = 0,
    on_checkpoint: Callable[[np.ndarray], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Feed the schedule's batches to the trainer ``chunk`` steps at a time.

    Stops with :class:`DivergedError` on a NaN or Inf loss, or one ``EXPLODED`` times the first step's.
    ``done_losses``: the losses of the steps a checkpoint already did; their batches are still drawn (so
    the random stream advances exactly as before) but not trained on. ``on_checkpoint(losses so far)``
    runs after every ``every``-th step. ``stop()`` is asked after each chunk; when it says yes the run
    ends there and the losses returned are fewer than the schedule's steps.
    """
    total = sched.total_steps
    losses = np.empty(total, dtype=np.float64)
    done = 0 if done_losses is None else len(done_losses)
    losses[:done] = done_losses if done_losses is not None else []
    batches: list[np.ndarray | None] = []
    for step, batch in enumerate(sched):
        if step < done:
            continue
        batches.append(batch)
        end = done + len(batches)
        if len(batches) == chunk or end == total or (every and end % every == 0):
            chunk_losses = trainer.run(batches)
            losses[done:end] = chunk_losses
            limit = EXPLODED * max(float(losses[0]), 1.0)
            bad = np.flatnonzero(~(np.abs(chunk_losses) <= limit))  # NaN fails every comparison
            if bad.size:
                raise DivergedError(
                    f"training diverged: loss is {chunk_losses[bad[0]]:.4g} at step {done + bad[0] + 1}; "
                    + LOWER_LR
                )
            done, batches = end, []
            if on_progress is not None:
                on_progress(done, total, float(losses[done - 1]))
            if every and done % every == 0 and on_checkpoint is not None:
                on_checkpoint(losses[:done])
            if stop is not None and done < total and stop():
                break
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
