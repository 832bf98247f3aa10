"""Pictures a teacher can put on a projector: digit grids (Pillow) and charts (matplotlib, in charts.py).

Every picture has a title that says what it shows and of which model (recipe, backend, test accuracy),
dark text on a light background, captions in an 18 px font, and a label under every panel. Digit grids
(samples, misclassified digits, back-query, first-layer weights) are drawn with Pillow alone: each panel is
a 28×28 image scaled up by whole pixels (nearest neighbour, so a test can read the pixels back from
``Grid.layout.box(i)``). Files are written in the format their suffix names (:mod:`.picture_files`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .charts import confusion_chart, confusion_matrix, confusion_png, loss_curve_png
from .errors import PyfluxError
from .picture_files import model_details, model_name, model_summary, picture_format, save_picture
from .titles import wrap_title

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "Grid",
    "GridLayout",
    "backquery_png",
    "confusion_chart",
    "confusion_matrix",
    "confusion_png",
    "digit_grid",
    "errors_png",
    "grid_layout",
    "loss_curve_png",
    "model_details",
    "model_name",
    "model_summary",
    "picture_format",
    "samples_png",
    "save_picture",
    "signed_rgb",
    "weights_png",
]

BACKGROUND = (255, 255, 255)
TEXT = (25, 25, 25)
MUTED = (70, 70, 70)
WRONG = (180, 20, 20)  # dark red: 6:1 contrast on white
PAD = 6
TITLE_PX, SUBTITLE_PX, CAPTION_PX = 24, 18, 18  # font sizes; digits of 18 px fonts are 13 px tall
LINE = 1.3  # line height / font size
MIN_WIDTH = 560  # a title needs room even over a grid of three digits
SCREEN_HEIGHT = (
    1080  # a projector's (full HD) height: a grid of errors taller than this would be cut or shrunk
)
ERROR_COLUMNS = 10


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (Aileron) at ``size`` px; Pillow ≥ 10.1 built with FreeType, as
    every wheel is, has it."""
    return ImageFont.load_default(size=size)


def _text_width(text: str, size: int) -> float:
    return max((_font(size).getlength(line) for line in text.split("\n")), default=0.0)


def _wrap(text: str, size: int, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` px, broken between phrases (:mod:`.titles`)."""
    return wrap_title(text, width, _font(size).getlength)


def _line_h(size: int) -> int:
    return round(size * LINE)


# --- layout --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLayout:
    """Where everything lies: a title band (``top`` px), panels, an optional legend band (``bottom`` px).

    ``box(i)`` is panel i's 28·scale square, ``caption_box(i)`` the text under it."""

    n: int
    cols: int
    scale: int
    caption_lines: int = 1
    top: int = 0
    bottom: int = 0
    min_width: int = 0

    @property
    def rows(self) -> int:
        return max(1, -(-self.n // self.cols))

    @property
    def side(self) -> int:
        return 28 * self.scale

    @property
    def caption(self) -> int:
        return self.caption_lines * _line_h(CAPTION_PX) + (
            6 if self.caption_lines else 0
        )  # room for descenders

    @property
    def cell_w(self) -> int:
        return self.side + PAD

    @property
    def cell_h(self) -> int:
        return self.side + self.caption + PAD

    @property
    def grid_w(self) -> int:
        return self.cols * self.cell_w + PAD

    @property
    def left(self) -> int:
        return (self.size[0] - self.grid_w) // 2

    @property
    def size(self) -> tuple[int, int]:
        return (max(self.grid_w, self.min_width), self.top + self.rows * self.cell_h + PAD + self.bottom)

    def box(self, i: int) -> tuple[int, int, int, int]:
        r, c = divmod(i, self.cols)
        x, y = self.left + PAD + c * self.cell_w, self.top + PAD + r * self.cell_h
        return (x, y, x + self.side, y + self.side)

    def caption_box(self, i: int) -> tuple[int, int, int, int]:
        x0, _, x1, y1 = self.box(i)
        return (x0, y1, x1, y1 + self.caption)


def grid_layout(
    n: int,
    cols: int | None = None,
    scale: int = 3,
    caption_lines: int = 1,
    top: int = 0,
    bottom: int = 0,
    min_width: int = 0,
) -> GridLayout:
    """A grid of ``n`` panels: ``cols`` defaults to a near-square grid."""
    n = max(int(n), 1)
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    return GridLayout(n, min(cols, n), scale, caption_lines, top, bottom, min_width)


@dataclass(frozen=True)
class Grid:
    """A drawn digit grid and the layout a test reads its panels back with."""

    image: Image.Image
    layout: GridLayout


# --- digit grids -----------------------------------------------------------------------------------------


def digit_grid(
    images: np.ndarray,
    captions: Sequence[str],
    title: str,
    subtitle: str = "",
    cols: int | None = None,
    scale: int = 3,
    colors: Sequence[tuple[int, int, int]] | None = None,
    legend: Image.Image | None = None,
) -> Grid:
    """``(N, 28, 28)`` grey (0..255) or ``(N, 28, 28, 3)`` RGB digits → a titled grid, a caption under
    every panel (``\\n`` for more lines) and an optional legend under the grid.

    Panels grow (by whole pixels) until the widest caption fits under them."""
    a = np.asarray(images)
    if a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim not in (3, 4) or a.shape[1:3] != (28, 28) or len(a) == 0:
        raise PyfluxError(f"expected (N, 28, 28) digits, got an array of shape {a.shape}")
    if len(captions) != len(a):
        raise PyfluxError(f"{len(captions)} captions for {len(a)} digits")
    widest = max(_text_width(c, CAPTION_PX) for c in captions)
    scale = max(scale, int(np.ceil((widest + 4) / 28)))
    lines = max(c.count("\n") + 1 for c in captions)
    probe = grid_layout(len(a), cols, scale, lines)
    width = max(probe.grid_w, MIN_WIDTH, legend.width + 2 * PAD if legend else 0)
    title_lines = _wrap(title, TITLE_PX, width - 2 * PAD)
    sub_lines = _wrap(subtitle, SUBTITLE_PX, width - 2 * PAD) if subtitle else []
    top = PAD + len(title_lines) * _line_h(TITLE_PX) + len(sub_lines) * _line_h(SUBTITLE_PX) + PAD
    bottom = legend.height + PAD if legend else 0
    layout = grid_layout(len(a), cols, scale, lines, top, bottom, width)

    img = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    y = PAD
    for text, size, color in [(t, TITLE_PX, TEXT) for t in title_lines] + [
        (t, SUBTITLE_PX, MUTED) for t in sub_lines
    ]:
        draw.text((layout.size[0] / 2, y), text, fill=color, font=_font(size), anchor="ma")
        y += _line_h(size)
    font = _font(CAPTION_PX)
    for i, d in enumerate(a):
        panel = np.clip(np.rint(d), 0, 255).astype(np.uint8)
        tile = Image.fromarray(panel, "RGB" if panel.ndim == 3 else "L").convert("RGB")
        tile = tile.resize((layout.side, layout.side), Image.Resampling.NEAREST)
        img.paste(tile, layout.box(i)[:2])
        x0, y0, x1, _ = layout.caption_box(i)
        color = colors[i] if colors is not None else TEXT
        draw.multiline_text(
            ((x0 + x1) / 2, y0 + 2),
            captions[i],
            fill=color,
            font=font,
            anchor="ma",
            align="center",
            spacing=_line_h(CAPTION_PX) - CAPTION_PX,
        )
    if legend is not None:
        img.paste(legend, ((layout.size[0] - legend.width) // 2, layout.size[1] - legend.height - PAD))
    return Grid(img, layout)


def samples_png(
    images: np.ndarray, labels: np.ndarray, path: str | os.PathLike[str], n: int = 25, split: str = "train"
) -> Grid:
    """The first ``n`` digits with their labels."""
    n = max(1, min(int(n), len(images)))
    grid = digit_grid(
        images[:n],
        [str(int(x)) for x in labels[:n]],
        f"MNIST: the first {n} {'training' if split == 'train' else 'test'} digits",
        "each captioned with its label",
    )
    save_picture(grid.image, path)
    return grid


def errors_png(
    images: np.ndarray,
    labels: np.ndarray,
    pred: np.ndarray,
    path: str | os.PathLike[str],
    max_n: int = 100,
    model: Model | None = None,
) -> Grid | None:
    """Misclassified digits (the first ``max_n``, fewer when more rows would not fit one projector screen,
    :data:`SCREEN_HEIGHT`), captioned ``true 7`` / ``read 2``; ``None`` (and a picture that says so) when
    there are none."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    all_wrong = np.flatnonzero(labels != pred)
    total = f"{len(all_wrong)} of {len(labels)} test digits misclassified"
    if len(all_wrong) == 0:
        save_picture(_text_picture(f"Misclassified digits: none ({model_summary(model)})", total), path)
        return None
    cols = min(ERROR_COLUMNS, len(all_wrong))
    n = min(max_n, len(all_wrong))
    while True:  # a row less until the picture fits one screen (one row always stays)
        wrong = all_wrong[:n]
        shown = f"the first {n}" if n < len(all_wrong) else f"all {n}"
        grid = digit_grid(
            np.asarray(images)[wrong],
            [f"true {labels[i]}\nread {pred[i]}" for i in wrong],
            "Misclassified test digits" + (f": {model_name(model)}" if model is not None else ""),
            " · ".join(p for p in (model_details(model), total) if p)
            + f"; {shown} shown, each with its true label and the model's reading",
            cols=cols,
            colors=[WRONG] * n,
        )
        if grid.image.height <= SCREEN_HEIGHT or n <= cols:
            break
        n = (grid.layout.rows - 1) * cols
    save_picture(grid.image, path)
    return grid


def _text_picture(title: str, subtitle: str) -> Image.Image:
    """A picture of words alone, for a grid with nothing to show."""
    width = MIN_WIDTH
    t, s = _wrap(title, TITLE_PX, width - 2 * PAD), _wrap(subtitle, SUBTITLE_PX, width - 2 * PAD)
    img = Image.new("RGB", (width, 3 * PAD + len(t) * _line_h(TITLE_PX) + len(s) * _line_h(SUBTITLE_PX)))
    img.paste(BACKGROUND, (0, 0, *img.size))
    draw, y = ImageDraw.Draw(img), PAD
    for text, size, color in [(x, TITLE_PX, TEXT) for x in t] + [(x, SUBTITLE_PX, MUTED) for x in s]:
        draw.text((width / 2, y), text, fill=color, font=_font(size), anchor="ma")
        y += _line_h(size)
    return img


POSITIVE = np.array([255, 140, 0], np.float32)  # orange
NEGATIVE = np.array([40, 140, 255], np.float32)  # blue


def signed_rgb(w: np.ndarray) -> np.ndarray:
    """Signed values → RGB uint8: positive orange, negative blue, zero black, each panel scaled to max |w|."""
    w = np.asarray(w, dtype=np.float32)
    top = np.abs(w).reshape(len(w), -1).max(axis=1)
    v = w / np.where(top > 0, top, 1).reshape(-1, *([1] * (w.ndim - 1)))
    pos, neg = np.clip(v, 0, 1)[..., None], np.clip(-v, 0, 1)[..., None]
    return np.rint(pos * POSITIVE + neg * NEGATIVE).astype(np.uint8)


def signed_legend(width: int = 360) -> Image.Image:
    """The colour scale of :func:`signed_rgb`: blue (-max |w|) through black (0) to orange (+max |w|)."""
    bar_h, font = 18, _font(CAPTION_PX)
    ramp = np.linspace(-1, 1, width, dtype=np.float32)[None, :].repeat(bar_h, axis=0)[None]
    bar = Image.fromarray(signed_rgb(ramp)[0], "RGB")
    img = Image.new("RGB", (width + 80, bar_h + 2 * _line_h(CAPTION_PX) + 4), BACKGROUND)
    img.paste(bar, (40, 0))
    draw = ImageDraw.Draw(img)
    y = bar_h + 2
    for x, text in ((40, "-max |w|"), (40 + width / 2, "0"), (40 + width, "+max |w|")):
        draw.text((x, y), text, fill=TEXT, font=font, anchor="ma")
    draw.text(
        (img.width / 2, y + _line_h(CAPTION_PX)), "(each unit scaled to its own largest |w|)",
        fill=MUTED, font=font, anchor="ma",
    )  # fmt: skip
    return img


def weights_png(model: Model, path: str | os.PathLike[str], max_units: int = 256) -> Grid:
    """The first layer's weights of each hidden unit as a 28×28 image (orange +, blue -), with the scale."""
    W1 = np.asarray(model.params[0])
    units = min(len(W1), max_units)
    shown = f"all {units}" if units == len(W1) else f"the first {units} of {len(W1)}"
    grid = digit_grid(
        signed_rgb(W1[:units].reshape(units, 28, 28)),
        [f"unit {i}" if units <= 64 else str(i) for i in range(units)],
        f"First-layer weights: {model_name(model)}",
        " · ".join(p for p in (model_details(model), f"{shown} hidden units") if p)
        + ": each unit's 784 input weights as a 28x28 image, orange raises the unit, blue lowers it",
        scale=2 if units > 64 else 3,
        legend=signed_legend(),
    )
    save_picture(grid.image, path)
    return grid


def backquery_png(
    images: np.ndarray,
    path: str | os.PathLike[str],
    method: str = "",
    model: Model | None = None,
    readers: Sequence[tuple[str, np.ndarray]] = (),
) -> Grid:
    """Ten back-query images (0..1, ink bright), each captioned with its digit and, for every
    ``(name, probabilities (10, 10))`` in ``readers``, how that model reads it (``name: 3 99%``)."""
    a = np.asarray(images, dtype=np.float32)
    captions = []
    for d in range(len(a)):
        lines = [f"digit {d}"]
        for name, p in readers:
            k = int(np.argmax(p[d]))
            lines.append(f"{name}: {k} ({p[d, k]:.0%})")
        captions.append("\n".join(lines))
    how = f"{method} method" if method else "back-query"
    name = model_name(model) if model is not None else "the network"
    read = "; under each picture: the digit asked for" + (
        ", then what each model reads in it (red: a model reads another digit)" if readers else ""
    )
    grid = digit_grid(
        a * 255,
        captions,
        f"Back-query: the image {name} would call each digit",
        " · ".join(p for p in (model_details(model), how) if p) + read,
        cols=5,
        scale=4,
        colors=[TEXT if all(int(np.argmax(p[d])) == d for _, p in readers) else WRONG for d in range(len(a))],
    )
    save_picture(grid.image, path)
    return grid
