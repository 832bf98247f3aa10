"""Charts (matplotlib, the optional ``plots`` extra): the loss curve and the confusion matrix.

Sized for a projector: 12-14 pt text at 100 dpi (17-19 px), a title that names the recipe, the backend and
the test accuracy. A missing matplotlib is one clear error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PyfluxError
from .picture_files import NO_MATPLOTLIB, model_details, model_name, save_picture
from .titles import wrap_title

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

    from .model import Model

FONT_PT = 12  # 16.7 px at 100 dpi
TITLE_MARGIN_PX = 12  # kept free at each side of a figure title
STYLE: dict[RcKeyType, Any] = {
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT - 1,
    "ytick.labelsize": FONT_PT - 1,
    "legend.fontsize": FONT_PT - 1,
    "figure.titlesize": FONT_PT + 3,
    "figure.facecolor": "white",
    "text.color": "#191919",
}


@contextlib.contextmanager
def _figure(width: float, height: float) -> Iterator[Any]:
    """A matplotlib Figure (no pyplot, no global state) drawn under the projector style."""
    try:  # matplotlib: an optional extra, and a slow import only charts need
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise PyfluxError(NO_MATPLOTLIB) from None
    with matplotlib.rc_context(STYLE):
        yield Figure(figsize=(width, height), dpi=100, layout="constrained")


def fitted_title(fig: Any, text: str) -> str:
    """``text`` wrapped between phrases (:mod:`.titles`) to the figure's width at the figure-title size,
    so that a long recipe label takes two lines instead of running off both edges."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    renderer = FigureCanvasAgg(fig).get_renderer()
    prop = FontProperties(size=STYLE["figure.titlesize"])
    width = fig.get_figwidth() * fig.dpi - 2 * TITLE_MARGIN_PX

    def measure(line: str) -> float:
        return float(renderer.get_text_width_height_descent(line, prop, ismath=False)[0])

    return "\n".join(wrap_title(text, width, measure))


def loss_title_name(model: Model | None, steps: int) -> str:
    """The recipe label for a loss curve's title: without a ``steps`` override, which the title's own
    step count says already (``flux-tutorial, 60 steps``, not ``flux-tutorial (steps 60), 60 steps``)."""
    from .recipes import describe_overrides, recipe_overrides
    from .spec import Recipe

    recipe = getattr(model, "recipe", None)
    if not isinstance(recipe, Recipe):
        return model_name(model)
    changes = recipe_overrides(recipe)
    if changes.get("steps") == steps:
        del changes["steps"]
    return f"{recipe.name} ({describe_overrides(changes)})" if changes else recipe.name


def smooth_window(y: np.ndarray) -> int:
    """The (odd) running-mean window for a loss curve, or 1 when smoothing would change nothing visible:
    a full-batch curve is smooth already, and a mean over it would only repeat it."""
    window = (len(y) // 50) | 1
    if window < 3:
        return 1
    s = running_mean(y, window)
    inner = y[window // 2 : len(y) - window // 2]
    span = float(np.ptp(s)) or 1.0
    return window if float(np.mean(np.abs(inner - s))) > 0.01 * span else 1


def running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over an odd ``window`` of steps, only where the whole window fits: value k belongs to
    step ``k + window // 2``. No lag, and no edge where a truncated or padded window would bend the line
    (the per-step curve still shows the first and last steps)."""
    c = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])
    return (c[window:] - c[:-window]) / window


def epoch_means(losses: Sequence[float] | np.ndarray, epoch_steps: int | None) -> np.ndarray:
    """The arithmetic mean loss of each whole epoch (none without ``epoch_steps``): what the plot's dots
    show and what ``train`` reports beside the last step's loss."""
    y = np.asarray(losses, dtype=np.float64)
    n_epochs = len(y) // epoch_steps if epoch_steps else 0
    if n_epochs < 1 or not epoch_steps:
        return np.zeros(0)
    return y[: n_epochs * epoch_steps].reshape(n_epochs, epoch_steps).mean(axis=1)


def loss_curve_png(
    losses: Sequence[float] | np.ndarray,
    path: str | os.PathLike[str],
    epoch_steps: int | None = None,
    title: str = "",
    model: Model | None = None,
) -> Any:
    """The loss of every step, its running mean when the steps are noisy (minibatches), and the mean loss of
    each epoch (dots). Both means are arithmetic, so that the line and the dots agree where they meet (a
    geometric mean on a log axis would sit far below the epoch's mean when a few steps have large losses).
    The title names the recipe (``title``, else the model's) and the number of steps.
    Returns the matplotlib Figure (written already)."""
    y = np.asarray(losses, dtype=np.float64)
    if y.size == 0:
        raise PyfluxError("no losses to plot")
    recipe = title or (loss_title_name(model, len(y)) if model is not None else "")
    with _figure(8, 4.8) as fig:
        ax = fig.add_subplot()
        x = np.arange(1, len(y) + 1)
        finite = y[np.isfinite(y) & (y > 0)]
        wide = finite.size > 0 and finite.max() / finite.min() > 30  # more than a decade and a half: log axis
        window = smooth_window(y)
        ax.plot(x, y, color="tab:blue", alpha=0.35 if window > 1 else 1.0, lw=1 if window > 1 else 2,
                label="loss per step")  # fmt: skip
        if window > 1:  # the arithmetic mean, as the epoch dots: one kind of mean on every plot, log or not
            ax.plot(
                x[window // 2 : len(y) - window // 2],
                running_mean(y, window),
                color="navy",
                lw=2,
                label=f"mean of {window} steps (running)",
            )
        means = epoch_means(y, epoch_steps)
        if len(means) and epoch_steps:
            ends = np.arange(1, len(means) + 1) * epoch_steps
            ax.plot(ends, means, "o-", color="tab:orange", lw=1.5, label="mean over each whole epoch")
            for e, m in zip(ends, means, strict=True):
                ax.annotate(f"{m:.3f}", (e, m), textcoords="offset points", xytext=(0, 8), ha="center")
        if wide:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (cross-entropy)" if model is None else "loss")
        steps = f"{len(y)} steps" + (f" of {epoch_steps} per epoch" if epoch_steps else "")
        fig.suptitle(
            fitted_title(fig, f"Training loss: {recipe}, {steps}" if recipe else f"Training loss: {steps}")
        )
        if model is not None:
            ax.set_title(model_details(model), color="#464646")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        save_picture(fig, path)
    return fig


def confusion_matrix(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``(10, 10)`` counts: row = true digit, column = predicted digit."""
    m = np.zeros((10, 10), np.int64)
    np.add.at(m, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return m


def _luminance(rgba: Sequence[float]) -> float:
    """Relative luminance (sRGB, WCAG) of a colour with channels in 0..1."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def text_color(background: Sequence[float]) -> str:
    """Black or white, whichever contrasts more with ``background`` (WCAG contrast ratio)."""
    lum = _luminance(background)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def confusion_png(
    labels: np.ndarray, pred: np.ndarray, path: str | os.PathLike[str], model: Model | None = None
) -> np.ndarray:
    """Write the confusion matrix of ``labels`` and ``pred`` (:func:`confusion_chart`); returns it."""
    m = confusion_matrix(labels, pred)
    confusion_chart(m, path, model)
    return m


def confusion_chart(m: np.ndarray, path: str | os.PathLike[str], model: Model | None = None) -> Any:
    """The ``(10, 10)`` confusion matrix ``m`` with its count in every non-empty cell, in black or white,
    whichever contrasts more with the cell; returns the matplotlib Figure (written already).

    The colours follow the counts on a symmetric-log scale (so that 3 confusions show beside 1000 correct
    digits), and the colour bar is labelled in counts: 0, 1, 10, 100, 1000."""
    from matplotlib.colors import SymLogNorm  # matplotlib: loaded by _figure only when a chart is drawn
    from matplotlib.ticker import FixedLocator, FuncFormatter

    acc = np.trace(m) / max(m.sum(), 1)
    with _figure(8, 7) as fig:
        ax = fig.add_subplot()
        norm = SymLogNorm(linthresh=1, linscale=0.5, vmin=0, vmax=max(int(m.max()), 1), base=10)
        im = ax.imshow(m, cmap="Blues", norm=norm)
        for (r, c), count in np.ndenumerate(m):
            if count:
                ax.text(c, r, str(count), ha="center", va="center", fontsize=FONT_PT - 1,
                        color=text_color(im.cmap(norm(count))),
                        fontweight="bold" if r != c else "normal")  # fmt: skip
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.set_xlabel("predicted digit")
        ax.set_ylabel("true digit")
        fig.suptitle(
            fitted_title(fig, "Confusion matrix" + (f": {model_name(model)}" if model is not None else ""))
        )
        backend = (getattr(model, "meta", None) or {}).get("backend")
        ax.set_title(
            (f"{backend} backend · " if backend else "")
            + f"{acc:.2%} of {m.sum()} digits correct (the diagonal)\nerrors in bold",
            color="#464646",
        )
        ticks = [0] + [10**k for k in range(int(np.log10(max(m.max(), 1))) + 1)]
        bar = fig.colorbar(im, ax=ax, shrink=0.85)
        bar.set_label("digits (count)")
        bar.locator = FixedLocator(ticks)
        bar.formatter = FuncFormatter(lambda v, _: f"{v:.0f}")
        bar.update_ticks()
        save_picture(fig, path)
    return fig
