"""How a :class:`~pyflux_mnist.model.Model` and a :class:`~pyflux_mnist.training.TrainResult` show in
Jupyter: a compact card (the recipe as changed, the network, the training, the backend, the accuracies)
with pictures, through ``_repr_html_`` and ``_repr_png_``; ``repr()`` stays one line.

The pictures are the package's own (the loss curve of :mod:`.charts`, the first-layer weights of
:mod:`.pictures`), so a card shows what ``train --plot`` and ``show weights`` draw. Every string in the
card is escaped: a model file's metadata is text from whoever wrote the file.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Model
    from .training import TrainResult

#: A card shows at most this many hidden units' weights (a 512-unit network would fill the page), in rows
#: of 8 panels of 56 px.
CARD_UNITS, CARD_COLS, CARD_SCALE = 32, 8, 2
#: How wide a card shows its pictures (drawn for a projector: the loss chart is 800 px, the weights 560 px).
LOSS_PX, WEIGHTS_PX = 480, 400


def _png(draw: Callable[[Path], Any]) -> bytes:
    """The PNG that ``draw(path)`` writes, through a temporary file (the pictures write files)."""
    with tempfile.TemporaryDirectory(prefix="pyflux-mnist-card-") as folder:
        path = Path(folder) / "picture.png"
        draw(path)
        return path.read_bytes()


def weights_png_bytes(model: Model) -> bytes:
    """The first-layer weights of the first :data:`CARD_UNITS` hidden units, as a compact grid (PNG)."""
    from .pictures import digit_grid, model_name, save_picture, signed_legend, signed_rgb

    W1 = model.params[0]
    units = min(len(W1), CARD_UNITS)
    shown = f"all {units}" if units == len(W1) else f"the first {units} of {len(W1)}"
    grid = digit_grid(
        signed_rgb(W1[:units].reshape(units, 28, 28)),
        [str(i) for i in range(units)],
        "First-layer weights",
        f"{model_name(model)} · {shown} hidden units · orange raises a unit, blue lowers it",
        cols=CARD_COLS,
        scale=CARD_SCALE,
        legend=signed_legend(),
    )
    return _png(lambda path: save_picture(grid.image, path))


def loss_png_bytes(result: TrainResult) -> bytes | None:
    """The loss curve as PNG bytes; ``None`` without matplotlib (the ``plots`` extra)."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    from .charts import loss_curve_png

    return _png(lambda path: loss_curve_png(result.losses, path, result.epoch_steps, model=result.model))


def _percent(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def model_rows(model: Model) -> list[tuple[str, str]]:
    """What a card says about a model, as (heading, value) pairs of plain text."""
    from .recipes import recipe_label

    r, meta = model.recipe, model.meta
    spec = model.spec
    layers = ", ".join(spec.activations)
    parameters = sum(p.size for p in model.params)
    opt = r.optimizer
    batch = "full batch" if r.batch_size == 0 else f"batches of {r.batch_size}"
    length = f"{r.epochs} epoch{'s' if r.epochs != 1 else ''}" if r.epochs else f"{r.steps} steps"
    rows = [
        ("recipe", recipe_label(r)),
        ("network", f"{'-'.join(map(str, spec.sizes))} ({layers}; {spec.loss}), {parameters:,} weights"),
        ("training", f"{opt.name} lr {opt.lr:g}, {batch}, {length}, seed {meta.get('seed', '?')}"),
        ("backend", str(meta.get("backend", "?"))),
        (
            "accuracy",
            f"test {_percent(meta.get('test_accuracy'))}, train {_percent(meta.get('train_accuracy'))}",
        ),
    ]
    if isinstance(meta.get("final_loss"), int | float):
        rows.append(("loss of the last step's batch", f"{meta['final_loss']:.4f}"))
    return rows


def result_rows(result: TrainResult) -> list[tuple[str, str]]:
    """A model's rows, with the run's own: steps done and where the time went."""
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items() if k != "total")
    rows = model_rows(result.model)
    rows.append(("run", f"{len(result.losses)} steps in {result.seconds:.1f} s ({parts})"))
    return rows


def card_html(title: str, rows: list[tuple[str, str]], pictures: list[tuple[bytes, str, int]]) -> str:
    """A compact card: a title, then a two-column table and pictures (PNG bytes, alt text, width in px)
    side by side where the page is wide enough; every string escaped."""
    esc = html.escape
    cells = "".join(
        f'<tr><th style="text-align:left;padding:1px 12px 1px 0;font-weight:600">{esc(k)}</th>'
        f'<td style="text-align:left;padding:1px 0">{esc(v)}</td></tr>'
        for k, v in rows
    )
    images = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{esc(alt)}" '
        f'style="width:{width}px;max-width:100%;height:auto;border:1px solid #ddd">'
        for png, alt, width in pictures
    )
    return (
        '<div class="pyflux-mnist-card" style="font-family:sans-serif;line-height:1.35">'
        f'<div style="font-size:1.15em;font-weight:600;margin-bottom:4px">{esc(title)}</div>'
        '<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start">'
        f'<table style="margin:0">{cells}</table>{images}</div></div>'
    )


def model_html(model: Model) -> str:
    from .recipes import recipe_label

    weights = (weights_png_bytes(model), f"first-layer weights of {recipe_label(model.recipe)}", WEIGHTS_PX)
    return card_html(f"Model: {recipe_label(model.recipe)}", model_rows(model), [weights])


def result_html(result: TrainResult) -> str:
    from .recipes import recipe_label

    label = recipe_label(result.recipe)
    pictures = []
    loss = loss_png_bytes(result)
    if loss is not None:
        pictures.append((loss, f"training loss of {label}", LOSS_PX))
    pictures.append((weights_png_bytes(result.model), f"first-layer weights of {label}", WEIGHTS_PX))
    return card_html(f"Training run: {label}", result_rows(result), pictures)


def result_png(result: TrainResult) -> bytes:
    """The loss curve; the weights without matplotlib."""
    return loss_png_bytes(result) or weights_png_bytes(result.model)
