"""``train``, ``tutorial``, ``evaluate`` and ``info``: the commands around the training loop."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
from click.core import ParameterSource

from .. import settings
from ..backends import backend_availability, backend_detail_lines, backend_details
from ..blas import blas_libraries
from ..checkpoint import DEFAULT_EVERY, Checkpoint, load_checkpoint
from ..errors import PyfluxError, TrainingInterrupted
from ..mnist import load_mnist
from ..model import load_model
from ..picture_files import SUFFIXES, check_chart_output, check_grid_output
from ..pictures import confusion_png, errors_png, loss_curve_png
from ..recipes import FLUX_TUTORIAL, recipe_label, recipe_overrides
from ..run import FIELDS, Overrides, Run, build_run
from ..spec import MAX_STEPS
from ..training import LOWER_LR, TrainResult, train_run
from ..userpaths import escape
from ..version import __version__
from .common import (
    NUMBER,
    WHOLE,
    WIDTHS,
    backend_option,
    check_npz_output,
    check_writable,
    data_dir_option,
    echo_json,
    json_option,
    offline_option,
    recipe_option,
    seed_option,
)
from .progress import StepProgress

if TYPE_CHECKING:
    from ..mnist import MnistData

#: The article's ``throttle(evalcb, 10)``: seconds between two loss prints of ``tutorial``.
THROTTLE_S = 10.0


@click.command()
@backend_option
@recipe_option
@click.option("--steps", type=WHOLE, default=None, help="Optimiser steps (overrides the recipe).")
@click.option("--epochs", type=WHOLE, default=None, help="Passes over the training set (overrides it).")
@click.option("--batch-size", type=WHOLE, default=None, help="Samples per step; 0 = full batch.")
@click.option("--lr", type=NUMBER, default=None, help="Learning rate (overrides the recipe's).")
@click.option("--hidden", type=WIDTHS, default=None, help="Hidden layer width(s), e.g. 32 or 512,256,128.")
@seed_option
@data_dir_option
@offline_option
@click.option("--no-verify", is_flag=True, help="Accept IDX files whose checksums are not MNIST's.")
@click.option(
    "--save", "save_path", type=click.Path(dir_okay=False), default=None, help="Write the model (.npz)."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Write the loss curve ({SUFFIXES}; needs matplotlib).",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a checkpoint (weights, optimiser state, position) here every --checkpoint-every steps "
    "and on Ctrl-C, atomically.",
)
@click.option(
    "--checkpoint-every",
    type=int,
    default=None,
    help=f"Steps between checkpoints (default {DEFAULT_EVERY}; needs --checkpoint or --resume).",
)
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Continue the run saved in this checkpoint (its recipe, seed and backend); it keeps "
    "checkpointing there unless --checkpoint says elsewhere.",
)
@json_option("one JSON object instead of the summary")
@click.pass_context
def train(
    ctx,
    backend,
    recipe,
    steps,
    epochs,
    batch_size,
    lr,
    hidden,
    seed,
    data_dir,
    offline,
    no_verify,
    save_path,
    plot_path,
    checkpoint_path,
    checkpoint_every,
    resume_path,
    as_json,
) -> None:
    """Train a recipe (default: the Flux tutorial network) and report train/test accuracy.

    Ctrl-C stops at the next step (writing the checkpoint when --checkpoint is given) and exits 130.
    """

    # Everything that can be checked is checked here, before the data is loaded or a step is run.
    ck = None
    given_checkpoint = checkpoint_path  # a --resume file keeps its name; a new one is named .npz
    if resume_path is not None:
        ck = load_checkpoint(resume_path)
        _check_resume_options(ctx, ck, backend, seed)
        # it keeps checkpointing where and as often as it did
        checkpoint_path, checkpoint_every = checkpoint_path or resume_path, checkpoint_every or ck.every
    changes = Overrides(steps, epochs, batch_size, lr, hidden)
    run = build_run(recipe, None if ck else backend, seed, changes, ck)
    _check_checkpoint_every(checkpoint_every, checkpoint_path)
    _check_distinct(save_path=save_path, plot_path=plot_path, checkpoint_path=checkpoint_path)
    check_writable(save_path, "model")
    check_npz_output(save_path, "--save", "model file")  # after: a device node is refused as one
    check_writable(plot_path, "plot")
    check_chart_output(plot_path, "--plot")
    check_writable(checkpoint_path, "checkpoint")
    check_npz_output(given_checkpoint, "--checkpoint", "checkpoint")
    data = load_mnist(data_dir, offline=offline or None, verify=not no_verify)
    result = _train_with_progress(run, data, checkpoint_path, checkpoint_every or 0)
    if len(result.losses) > 1 and result.final_loss > result.losses[0]:
        click.echo(
            f"Warning: the loss ended higher than it started ({result.losses[0]:.4f} -> "
            f"{result.final_loss:.4f}); {LOWER_LR}.",
            err=True,
        )
    if save_path:
        result.model.save(save_path)
    if plot_path:
        loss_curve_png(result.losses, plot_path, epoch_steps=result.epoch_steps, model=result.model)
    _report(result, save_path, plot_path, as_json, ck.steps_done if ck else 0)


def _train_with_progress(run: Run, data: MnistData, checkpoint_path: str | None, every: int) -> TrainResult:
    """:func:`~pyflux_mnist.training.train_run` with a progress bar on stderr."""
    ck = run.resume
    if ck is not None and ck.steps_done >= ck.total_steps:  # nothing to run: say so, train nothing
        click.echo(
            escape(
                f"{ck.path}: this run is complete already ({ck.steps_done} of {ck.total_steps} steps): "
                "no step is trained and the checkpoint is left as it is; its model is evaluated"
            ),
            err=True,
        )
    on_progress = StepProgress(f"{run.recipe.name} [{run.backend}]", resumed_at=ck.steps_done if ck else 0)
    try:
        return train_run(run, data, on_progress=on_progress, checkpoint=checkpoint_path, every=every)
    except TrainingInterrupted as e:
        if e.checkpoint is not None:
            raise
        raise e.with_advice("(train with --checkpoint PATH to be able to resume)") from None
    finally:
        on_progress.close()


def _report(
    result: TrainResult, save_path: str | None, plot_path: str | None, as_json: bool, resumed_at: int = 0
) -> None:
    """The summary on stdout: a few aligned lines, or one JSON object. ``resumed_at``: the steps a
    checkpoint had done, so that the time is not read as the whole run's."""
    from ..charts import epoch_means

    s = result.summary()
    means = epoch_means(result.losses, result.epoch_steps)
    last_epoch = float(means[-1]) if len(means) else None
    if as_json:
        # A loss is a float32 figure: its shortest float32 digits, not float64 noise (2.1075017, not
        # 2.1075016506055992); a mean of many is rounded to 6 places.
        s.update(
            final_loss=float(str(np.float32(s["final_loss"]))),
            last_epoch_mean_loss=None if last_epoch is None else round(last_epoch, 6),
            saved=save_path,
            plot=plot_path,
        )
        echo_json(s)
        return
    batch = result.recipe.batch_size
    click.echo(f"recipe         {recipe_label(result.recipe)}  (backend {s['backend']}, seed {result.seed})")
    now = f" ({s['steps'] - resumed_at} of them in this run)" if resumed_at else ""
    click.echo(f"steps          {s['steps']}{now}  in {s['seconds']:.1f} s")
    # The last step's loss is one batch's: with a batch of one sample it says little about the run.
    what = "on every training digit" if batch == 0 else f"on its batch of {batch} sample{'s' * (batch > 1)}"
    click.echo(f"final loss     {s['final_loss']:.4f}  (the last step's, {what})")
    if last_epoch is not None and batch:
        click.echo(
            f"epoch loss     {last_epoch:.4f}  (the mean over the last epoch's {result.epoch_steps} steps)"
        )
    click.echo(f"train accuracy {s['train_accuracy']:.4f}")
    click.echo(f"test accuracy  {s['test_accuracy']:.4f}")
    if save_path:
        click.echo(f"saved model    {save_path}")
    if plot_path:
        click.echo(f"loss curve     {plot_path}")


def _check_resume_options(ctx: click.Context, ck: Checkpoint, backend: str, seed: int) -> None:
    """With --resume the run is the checkpoint's: refuse options that would make it another run."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)

    clashes = [f"--{n.replace('_', '-')}" for n in ("recipe", *FIELDS) if given(n)]
    if given("seed") and seed != ck.seed:
        clashes.append("--seed")
    if given("backend") and backend != ck.backend:
        clashes.append("--backend")
    if clashes:
        raise PyfluxError(
            f"--resume continues the checkpoint's run (recipe {recipe_label(ck.recipe)}, seed {ck.seed}, "
            f"backend {ck.backend}); drop {', '.join(clashes)}"
        )


def _check_checkpoint_every(every: int | None, checkpoint_path: str | None) -> None:
    if every is None:
        return
    if not 0 < every <= MAX_STEPS:
        raise PyfluxError(f"--checkpoint-every must be a positive number of steps, got {every}")
    if checkpoint_path is None:
        raise PyfluxError("--checkpoint-every needs --checkpoint PATH (where to write the checkpoints)")


def _check_distinct(**paths: str | None) -> None:
    """Two outputs in one file would overwrite each other (a model over the checkpoint, say)."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key, flag = Path(path).resolve(), option.removesuffix("_path").replace("_", "-")
        if key in seen:
            raise PyfluxError(f"--{seen[key]} and --{flag} both write {path}; give them different files")
        seen[key] = flag


@click.command()
@backend_option
@data_dir_option
@offline_option
@click.option(
    "--throttle", type=float, default=THROTTLE_S, show_default=True, help="Seconds between loss prints."
)
def tutorial(backend, data_dir, offline, throttle) -> None:
    """The classic Flux MNIST tutorial, as the article runs it.

    Prints loss(X, Y) at most every --throttle seconds (the article's throttle(evalcb, 10)), then the
    training accuracy and the test accuracy.
    """

    if not (throttle >= 0 and math.isfinite(throttle)):
        raise PyfluxError(f"--throttle must be a non-negative number of seconds, got {throttle}")
    run = build_run(FLUX_TUTORIAL, backend)
    data = load_mnist(data_dir, offline=offline or None)
    last = [-math.inf]
    printed = [0]  # the last step whose loss was printed

    def evalcb(done: int, total: int, loss: float) -> None:
        # throttle(f, 10): call at once, then at most once every --throttle seconds
        now = time.monotonic()
        if now - last[0] >= throttle:
            last[0], printed[0] = now, done
            click.echo(f"loss(X, Y) = {loss:.6f}   (step {done}/{total})")

    try:
        result = train_run(run, data, on_progress=evalcb)
    except TrainingInterrupted as e:
        raise e.with_advice(
            "(the tutorial always starts from the beginning; for a run you can stop and resume: "
            "pyflux-mnist train --checkpoint PATH)"
        ) from None
    if printed[0] < len(result.losses):  # the last loss, unless the throttle let it through already
        click.echo(f"loss(X, Y) = {result.final_loss:.6f}   (step {len(result.losses)}/{len(result.losses)})")
    click.echo(f"accuracy(X, Y) = {result.train_accuracy:.4f}")
    click.echo(f"accuracy(tX, tY) = {result.test_accuracy:.4f}   (test set)")


@click.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@data_dir_option
@offline_option
@click.option(
    "--confusion",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Write the confusion matrix ({SUFFIXES}; needs matplotlib).",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Write a grid of misclassified test digits ({SUFFIXES}).",
)
@json_option()
def evaluate(model_path, data_dir, offline, confusion, errors_path, as_json) -> None:
    """Evaluate a saved model on the MNIST test set (NumPy; no Julia needed)."""

    model = load_model(model_path)
    check_writable(confusion, "confusion matrix")
    check_writable(errors_path, "error grid")
    check_chart_output(confusion, "--confusion")
    check_grid_output(errors_path, "--errors")
    data = load_mnist(data_dir, offline=offline or None, verify=False)
    pred = model.predict(data.test_images)
    labels = data.test_labels
    acc = float(np.mean(pred == labels))
    per_class = {str(d): float(np.mean(pred[labels == d] == d)) for d in range(10)}
    shown = 0  # misclassified digits in the --errors grid
    if confusion:
        confusion_png(labels, pred, confusion, model=model)
    if errors_path:
        grid = errors_png(data.test_images, labels, pred, errors_path, model=model)
        shown = grid.layout.n if grid is not None else 0
    out = {
        "model": model_path,
        "recipe": model.recipe.name,
        "overrides": recipe_overrides(model.recipe),
        "trained_with": model.meta.get("backend"),
        "test_accuracy": acc,
        "per_class_accuracy": per_class,
        "errors": int(np.sum(pred != labels)),
    }
    if as_json:
        echo_json(out)
        return
    about = f"recipe {recipe_label(model.recipe)}, trained with {out['trained_with']}"
    click.echo(escape(f"model          {model_path}  ({about})"))
    click.echo(f"test accuracy  {acc:.4f}  ({out['errors']} of {len(labels)} wrong)")
    click.echo("per digit      " + "  ".join(f"{d}:{a:.3f}" for d, a in per_class.items()))
    if confusion:
        click.echo(f"confusion      {confusion}")
    if errors_path:  # the grid fits one screen: it may show fewer than all
        count = f"  ({shown} of the {out['errors']} misclassified digits shown)" if shown else ""
        click.echo(f"errors         {errors_path}{count}")


def blas_info() -> list[dict]:
    keys = ("internal_api", "version", "num_threads", "architecture")
    return [{k: lib[k] for k in keys} for lib in blas_libraries()]


def model_info(path: str) -> dict[str, Any]:
    """What ``info MODEL`` shows: the recipe and what was changed in it, sizes, who trained it, how well."""

    model = load_model(path)
    keys = ("backend", "seed", "steps", "final_loss", "train_accuracy", "test_accuracy", "package_version")
    return {
        "path": path,
        "recipe": model.recipe.name,
        "overrides": recipe_overrides(model.recipe),
        "sizes": list(model.spec.sizes),
        **{k: model.meta.get(k) for k in keys},
        "description": repr(model),
    }


@click.command()
@click.argument("model_path", required=False, type=click.Path(dir_okay=False))
@json_option()
def info(model_path: str | None, as_json: bool) -> None:
    """Package version, which backends can run here (and why not), BLAS, threads and every setting; with
    MODEL, what that model file holds (its recipe and any changes to it, who trained it, its accuracy)."""

    model = model_info(model_path) if model_path else None
    out: dict[str, Any] = {
        **({"model": model} if model else {}),  # what was asked about comes first
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "backends": backend_availability(),
        "backend_details": {name: d for name, d in backend_details().items() if d},
        "blas": blas_info(),
        "settings": settings.current(),
    }
    if as_json:
        echo_json(out)
        return
    if model:  # the model asked about first; this installation's details after it
        click.echo(escape(f"model        {model_path}: {model['description']}"))
        click.echo(
            f"             seed {model['seed']}, {model['steps']} steps, written by pyflux-mnist "
            f"{model['package_version']}"
        )
        click.echo("")
    click.echo(f"pyflux-mnist {__version__}  (Python {out['python']}, NumPy {out['numpy']})")
    click.echo(f"platform     {out['platform']}, {out['cpu_count']} CPUs")
    for name, state in out["backends"].items():
        click.echo(f"backend      {name:<6} {state}")
    for name, line in backend_detail_lines().items():
        click.echo(f"{name:<12} {line}")
    for lib in out["blas"]:
        click.echo("blas         " + ", ".join(f"{k}={v}" for k, v in lib.items()))
    for setting in settings.SETTINGS:
        value = out["settings"][setting.name]
        click.echo(f"setting      {setting.name}={'' if value is None else value}  # {setting.doc}")


COMMANDS = [train, tutorial, evaluate, info]
