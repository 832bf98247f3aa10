"""``predict``, ``backquery`` and ``show``: your own digits, and pictures of the data and the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from ..backquery import METHODS, digit_prior, method_for
from ..backquery import backquery as run_backquery
from ..errors import DataError, PyfluxError
from ..mnist import load_mnist
from ..model import load_model
from ..picture_files import SUFFIXES, check_grid_output
from ..pictures import backquery_png, samples_png, weights_png
from ..userpaths import escape
from .common import (
    ERROR_EXIT,
    SuggestingGroup,
    check_writable,
    data_dir_option,
    echo_json,
    json_option,
    offline_option,
    progress,
    without_name,
)


@click.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@json_option("a JSON list: path, label and the --top probabilities by digit; or path and error")
@click.option(
    "--save-preprocessed",
    "save_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the 28x28 digit the model saw for each image into this folder (NAME.png), and the steps "
    "that made it (NAME-strip.png: the photo with the sheet outlined, the straightened crop, the 28x28). "
    "The folder is made when missing (the folder above it must exist); each file written is named on "
    "stderr with the image it came from (two images called NAME give NAME and NAME-2).",
)
@click.option(
    "--top",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Probabilities shown (also in --json).",
)
@click.pass_context
def predict(ctx, model_path, images, as_json, save_dir, top) -> None:
    """Predict the digit in each IMAGE (PNG, JPEG, GIF, BMP, TIFF, WebP, PPM; photos or drawings).

    Each picture is made to look like an MNIST digit first: a sheet of paper lying on a desk is found and
    turned straight, the background found and inverted, lighting and paper texture removed, cropped,
    scaled to 20 px and centred by its centre of mass in 28x28. A file that
    cannot be read or has no ink gets its own error; the others are still predicted, and the exit code is 1.
    """
    from ..photo import predict_files  # the photo pipeline (and Pillow's drawing modules): ~0.1 s, only here

    model = load_model(model_path)
    if save_dir is not None:
        _prepare_save_dir(save_dir)
    results = predict_files(model, images, top=top, save_dir=save_dir)
    if as_json:
        echo_json([_json_result(r) for r in results])
    else:
        for r in results:
            if "error" in r:
                click.echo(escape(f"{r['path']}: error: {without_name(r['error'], r['path'])}"))
                continue
            shown = "  ".join(f"{k}: {p:.3f}" for k, p in r["top"])
            click.echo(escape(f"{r['path']}: {r['label']}   ({shown})"))
    for r in results:
        if "strip" in r:  # what was written, and from which image (two x.png from two folders: x, x-2)
            progress(escape(f"wrote {r['preprocessed']} and {r['strip']}  (from {r['path']})"))
        if "save_error" in r:
            click.echo(escape(f"Error: {r['save_error']}"), err=True)
    if any("error" in r or "save_error" in r for r in results):
        ctx.exit(ERROR_EXIT)


def _prepare_save_dir(save_dir: str) -> None:
    """As ``train --save`` treats its file, ``--save-preprocessed`` treats its folder: the folder itself
    is made when missing (and said), the folders above it must exist (a typo must not grow a tree)."""
    folder = Path(save_dir)
    if folder.is_dir():
        return
    parent = folder.resolve().parent
    if not parent.is_dir():
        raise PyfluxError(
            escape(
                f"--save-preprocessed {save_dir}: folder {parent} does not exist (only {folder.name} is made)"
            )
        )
    folder.mkdir()
    progress(escape(f"created folder {save_dir}"))


def _json_result(r: dict[str, Any]) -> dict[str, Any]:
    """``{"path", "label", "probabilities": {digit: p}}`` with the --top most probable digits, most
    probable first (``--top 10`` gives all ten), and ``preprocessed``/``strip`` (the files written) with
    --save-preprocessed; or ``{"path", "error"}``."""
    if "error" in r:  # the path is the record's own field: the error does not repeat it
        return {"path": r["path"], "error": without_name(r["error"], r["path"])}
    saved: dict[str, Any] = {k: r[k] for k in ("preprocessed", "strip") if k in r}  # --save-preprocessed
    return {
        "path": r["path"],
        "label": r["label"],
        "probabilities": {str(k): p for k, p in r["top"]},
        **saved,
    }


@click.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="backquery.png",
    show_default=True,
    help=f"The picture: {SUFFIXES}.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="prior: the most digit-like image (a model of MNIST digits learned without labels) the network "
    "calls each digit; optimise: gradient ascent in pixels, no data needed; rashid: invert sigmoid layers "
    "(Rashid's back-query); auto: rashid for all-sigmoid networks, else prior.",
)
@click.option(
    "--check-with",
    "checkers",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Another model file (repeatable) that reads the pictures too: an independent check.",
)
@data_dir_option
@offline_option
def backquery(model_path, output, method, checkers, data_dir, offline) -> None:
    """Draw, for each digit 0-9, the image the network "thinks" is that digit (one 10-panel picture)."""

    model = load_model(model_path)
    others = [load_model(p) for p in checkers]
    check_writable(output, "back-query picture")
    check_grid_output(output, "-o")
    used = method_for(model.spec) if method == "auto" else method
    prior = None
    if used == "prior":
        try:
            train_images = load_mnist(data_dir, offline=offline or None, verify=False).train_images
        except DataError as e:  # the prior is learned from MNIST; one method is not
            raise DataError(f"{e} ({_PRIOR_NEEDS_DATA})") from None
        prior = digit_prior(train_images)
    images, used = run_backquery(model, used, prior=prior)
    readers = [("self", model.probabilities(images))]  # floats in [0, 1]
    for path, other in zip(checkers, others, strict=True):
        readers.append((Path(path).stem, other.probabilities(images)))
    backquery_png(images, output, used, model=model, readers=readers)
    click.echo(f"back-query ({used}) written to {output}")
    for name, p in readers:
        read = p.argmax(axis=1)
        agree = int(np.sum(read == np.arange(10)))
        who = "the network" if name == "self" else name
        click.echo(f"{who} reads them as {' '.join(str(int(k)) for k in read)}  ({agree} of 10 its digit)")
    for hint in _backquery_hints(method, used, bool(checkers)):
        click.echo(hint)


_PRIOR_NEEDS_DATA = (
    "the prior method learns what digits look like from MNIST's training images; "
    "--method optimise needs no data, but a person reads only its 0 and 1"
)


def _backquery_hints(asked: str, used: str, checked: bool) -> list[str]:
    """What the counts above do not say: who judged the pictures, and which method a person reads best
    (docs/images.md measures it: by eye, ``prior`` gives all ten digits, ``optimise`` only 0 and 1,
    ``rashid`` a ring for 0)."""
    hints = []
    if used == "optimise":
        hints.append(
            "(judged by the networks' argmax, not by eye: optimise draws what a network reads as each digit, "
            "and a person reads only its 0 and 1; --method prior draws digits a person reads)"
        )
    elif not checked:
        hints.append("(judged by the network itself; --check-with OTHER.npz asks another model too)")
    if asked == "auto" and used == "rashid":
        hints.append(
            "(auto picks Rashid's method for an all-sigmoid network, as his book does; "
            "--method prior draws digits a person reads more easily)"
        )
    return hints


@click.group(cls=SuggestingGroup)
def show() -> None:
    """Pictures: MNIST samples, first-layer weights."""


@show.command()
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("-n", "count", type=click.IntRange(1, 400), default=25, show_default=True, help="Digits.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="samples.png", show_default=True)
@data_dir_option
@offline_option
def samples(split, count, output, data_dir, offline) -> None:
    """A labelled grid of the first N MNIST digits."""

    check_writable(output, "samples picture")
    check_grid_output(output, "-o")
    data = load_mnist(data_dir, offline=offline or None, verify=False)
    images, labels = (
        (data.train_images, data.train_labels) if split == "train" else (data.test_images, data.test_labels)
    )
    samples_png(images, labels, output, count, split=split)
    click.echo(f"{count} {split} digits written to {output}")


@show.command()
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="weights.png", show_default=True)
@click.option("--max-units", type=click.IntRange(1, 4096), default=256, show_default=True)
def weights(model_path, output, max_units) -> None:
    """The first layer's weights of each hidden unit as a 28x28 image (orange positive, blue negative)."""

    model = load_model(model_path)
    check_writable(output, "weights picture")
    check_grid_output(output, "-o")  # a model always has a layer: ModelSpec needs an input and an output
    weights_png(model, output, max_units)
    units = min(model.spec.sizes[1], max_units)
    click.echo(f"{units} of {model.spec.sizes[1]} first-layer units written to {output}")


COMMANDS = [predict, backquery, show]
