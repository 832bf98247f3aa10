"""Pictures people would rather look at than read: digit grids (Pillow) and charts (matplotlib).

Digit grids (samples, misclassified digits, back-query, first-layer weights) are drawn with Pillow alone:
each panel is a 28×28 image scaled up by whole pixels (nearest neighbour, so a test can read the pixels
back), with a caption under it in Pillow's default font. The loss curve and the confusion matrix are
matplotlib charts; matplotlib is the optional ``plots`` extra, and a clear error says so when it is missing.
Every file is written atomically: grids as PNG, charts in the format their suffix names (see
:mod:`pyflux_mnist.picture_files`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write
from .errors import PyfluxError
from .picture_files import NO_MATPLOTLIB, chart_format

BACKGROUND = (48, 48, 48)
TEXT = (235, 235, 235)
WRONG = (255, 110, 90)
PAD = 4
CAPTION = 14


# --- layout --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLayout:
    """Where panel ``i`` of a grid lies: ``box(i)`` is its 28·scale square, ``caption_box(i)`` the text."""

    n: int
    cols: int
    scale: int
    caption: int = CAPTION

    @property
    def rows(self) -> int:
        return max(1, -(-self.n // self.cols))

    @property
    def side(self) -> int:
        return 28 * self.scale

    @property
    def cell_w(self) -> int:
        return self.side + PAD

    @property
    def cell_h(self) -> int:
        return self.side + self.caption + PAD

    @property
    def size(self) -> tuple[int, int]:
        return (self.cols * self.cell_w + PAD, self.rows * self.cell_h + PAD)

    def box(self, i: int) -> tuple[int, int, int, int]:
        r, c = divmod(i, self.cols)
        x, y = PAD + c * self.cell_w, PAD + r * self.cell_h
        return (x, y, x + self.side, y + self.side)

    def caption_box(self, i: int) -> tuple[int, int, int, int]:
        x0, _, x1, y1 = self.box(i)
        return (x0, y1, x1, y1 + self.caption)


def grid_layout(n: int, cols: int | None = None, scale: int = 3, caption: bool = True) -> GridLayout:
    """The layout :func:`digit_grid` uses: ``cols`` defaults to a near-square grid."""
    n = max(int(n), 1)
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    return GridLayout(n, min(cols, n), scale, CAPTION if caption else 0)


def _font(size: int = 12) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


# --- digit grids -----------------------------------------------------------------------------------------


def digit_grid(
    images: np.ndarray,
    captions: Sequence[str] | None = None,
    cols: int | None = None,
    scale: int = 3,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> Image.Image:
    """``(N, 28, 28)`` grey (0..255) or ``(N, 28, 28, 3)`` RGB digits → one RGB image with captions."""
    a = np.asarray(images)
    if a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim not in (3, 4) or a.shape[1:3] != (28, 28):
        raise PyfluxError(f"expected (N, 28, 28) digits, got an array of shape {a.shape}")
    layout = grid_layout(len(a), cols, scale, captions is not None)
    img = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = _font()
    for i, d in enumerate(a):
        panel = np.clip(np.rint(d), 0, 255).astype(np.uint8)
        tile = Image.fromarray(panel, "RGB" if panel.ndim == 3 else "L").convert("RGB")
        tile = tile.resize((layout.side, layout.side), Image.Resampling.NEAREST)
        img.paste(tile, layout.box(i)[:2])
        if captions is not None:
            x0, y0, x1, _ = layout.caption_box(i)
            color = colors[i] if colors is not None else TEXT
            draw.text(((x0 + x1) / 2, y0 + 1), str(captions[i]), fill=color, font=font, anchor="mt")
    return img


def save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write a PNG atomically; an unwritable path is one clear error."""
    try:
        with atomic_write(path) as f:
            img.save(f, "PNG")
    except OSError as e:
        raise PyfluxError(f"cannot write {path}: {e.strerror or e}") from None


def samples_png(
    images: np.ndarray, labels: np.ndarray, path: str | os.PathLike[str], n: int = 25
) -> Image.Image:
    """The first ``n`` digits with their labels."""
    n = max(1, min(int(n), len(images)))
    img = digit_grid(images[:n], [str(int(x)) for x in labels[:n]])
    save_png(img, path)
    return img


def errors_png(
    images: np.ndarray,
    labels: np.ndarray,
    pred: np.ndarray,
    path: str | os.PathLike[str],
    max_n: int = 100,
) -> Image.Image:
    """Misclassified digits (the first ``max_n``), captioned ``true 7 pred 2``."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    wrong = np.flatnonzero(labels != pred)[:max_n]
    if len(wrong) == 0:
        img = Image.new("RGB", (260, 40), BACKGROUND)
        ImageDraw.Draw(img).text((10, 12), "no misclassified digits", fill=TEXT, font=_font())
    else:
        captions = [f"true {labels[i]} pred {pred[i]}" for i in wrong]
        img = digit_grid(np.asarray(images)[wrong], captions, colors=[WRONG] * len(wrong))
    save_png(img, path)
    return img


def signed_rgb(w: np.ndarray) -> np.ndarray:
    """Signed values → RGB uint8: positive orange, negative blue, zero black, each panel scaled to max |w|."""
    w = np.asarray(w, dtype=np.float32)
    top = np.abs(w).reshape(len(w), -1).max(axis=1)
    v = w / np.where(top > 0, top, 1).reshape(-1, *([1] * (w.ndim - 1)))
    pos, neg = np.clip(v, 0, 1)[..., None], np.clip(-v, 0, 1)[..., None]
    rgb = pos * np.array([255, 140, 0], np.float32) + neg * np.array([40, 140, 255], np.float32)
    return np.rint(rgb).astype(np.uint8)


def weights_png(model: Any, path: str | os.PathLike[str], max_units: int = 256) -> Image.Image:
    """The first layer's weights of each hidden unit as a 28×28 image (orange +, blue -)."""
    W1 = np.asarray(model.params[0])
    units = min(len(W1), max_units)
    img = digit_grid(
        signed_rgb(W1[:units].reshape(units, 28, 28)),
        [str(i) for i in range(units)],
        scale=2 if units > 64 else 3,
    )
    save_png(img, path)
    return img


def backquery_png(images: np.ndarray, path: str | os.PathLike[str], method: str = "") -> Image.Image:
    """Ten back-query images (0..1, ink bright) captioned with their digit."""
    a = np.asarray(images, dtype=np.float32)
    captions = [f"{d}" + (f" ({method})" if method and d == 0 else "") for d in range(len(a))]
    img = digit_grid(a * 255, captions, cols=5, scale=4)
    save_png(img, path)
    return img


# --- charts (matplotlib) ------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PyfluxError(NO_MATPLOTLIB) from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format=chart_format(path))
    except OSError as e:
        raise PyfluxError(f"cannot write {path}: {e.strerror or e}") from None


def loss_curve_png(
    losses: Sequence[float] | np.ndarray,
    path: str | os.PathLike[str],
    epoch_steps: int | None = None,
    title: str = "",
) -> None:
    """The loss of every step (faint), its running mean, and the mean loss of each epoch (dots)."""
    y = np.asarray(losses, dtype=np.float64)
    if y.size == 0:
        raise PyfluxError("no losses to plot")
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    x = np.arange(1, len(y) + 1)
    ax.plot(x, y, color="tab:blue", alpha=0.3 if len(y) > 50 else 1.0, lw=0.8, label="loss per step")
    window = max(1, len(y) // 100)
    if window > 1:
        smooth = np.convolve(y, np.ones(window) / window, mode="valid")
        ax.plot(x[window - 1 :], smooth, color="tab:blue", lw=2, label=f"mean of {window} steps")
    if epoch_steps:
        n_epochs = len(y) // epoch_steps
        if n_epochs >= 1:
            means = y[: n_epochs * epoch_steps].reshape(n_epochs, epoch_steps).mean(axis=1)
            ends = np.arange(1, n_epochs + 1) * epoch_steps
            ax.plot(ends, means, "o-", color="tab:orange", lw=1.5, label="mean loss per epoch")
            for e, m in zip(ends, means, strict=True):
                ax.annotate(
                    f"{m:.3f}", (e, m), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
                )
    finite = y[np.isfinite(y) & (y > 0)]
    if finite.size and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    _save_figure(fig, path)


def confusion_matrix(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``(10, 10)`` counts: row = true digit, column = predicted digit."""
    m = np.zeros((10, 10), np.int64)
    np.add.at(m, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return m


def confusion_png(labels: np.ndarray, pred: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """The confusion matrix with its counts written in every cell; returns the matrix."""
    m = confusion_matrix(labels, pred)
    acc = np.trace(m) / max(m.sum(), 1)
    fig = _figure(6.4, 5.6)
    ax = fig.add_subplot()
    shown = np.log1p(m)
    im = ax.imshow(shown, cmap="Blues")
    for (r, c), count in np.ndenumerate(m):
        if count:
            dark = shown[r, c] > 0.6 * shown.max()
            ax.text(
                c,
                r,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else ("black" if r == c else "tab:red"),
            )
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {acc:.2%} of {m.sum()} correct")
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    _save_figure(fig, path)
    return m
