"""What a picture's file name promises: the format its suffix names (PNG, JPEG, SVG, PDF), checked before
any work and kept when writing; and the words every picture's title carries about its model.

Digit grids are Pillow images and charts are matplotlib figures; both go through :func:`save_picture`, so
``--plot loss.jpg`` writes a JPEG and ``-o weights.svg`` an SVG. The CLI checks a name
(:func:`check_chart_output`, :func:`check_grid_output`) before a long run, so that no run is lost to a
suffix we cannot write or to a missing matplotlib.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .atomic import atomic_write
from .errors import PyfluxError
from .recipes import recipe_label
from .spec import Recipe
from .userpaths import os_error_line

if TYPE_CHECKING:
    from .model import Model

#: Suffix → matplotlib's format name; no suffix means PNG. Charts and digit grids take the same ones.
FORMATS = {"": "png", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}
_ONE_EACH: dict[str, str] = {}
for _suffix, _fmt in FORMATS.items():
    if _suffix:
        _ONE_EACH.setdefault(_fmt, _suffix)
#: The suffixes as help texts name them, one per format: ".png, .jpg, .svg or .pdf".
SUFFIXES = f"{', '.join(list(_ONE_EACH.values())[:-1])} or {list(_ONE_EACH.values())[-1]}"
NO_MATPLOTLIB = "charts need matplotlib, which is not installed: pip install 'pyflux-mnist[plots]'"


def _format(path: str | os.PathLike[str], what: str, option: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        names = ", ".join(sorted({s for s in FORMATS if s}))
        where = f"{option} " if option else ""
        raise PyfluxError(f"{where}{path}: {what} can be written as {names}, not {suffix}")
    return FORMATS[suffix]


def picture_format(path: str | os.PathLike[str], option: str = "") -> str:
    """matplotlib's name for the format ``path``'s suffix asks for ('png', 'jpeg', 'svg', 'pdf'), for any
    picture, chart or digit grid."""
    return _format(path, "a picture", option)


def check_chart_output(path: str | os.PathLike[str] | None, option: str) -> None:
    """Before the work: the suffix is one we write, and matplotlib is installed."""
    if path is None:
        return
    _format(path, "a chart", option)
    if importlib.util.find_spec("matplotlib") is None:
        raise PyfluxError(f"{option} {path}: {NO_MATPLOTLIB}")


def check_grid_output(path: str | os.PathLike[str] | None, option: str) -> None:
    """Before the work: a digit grid's suffix is one we write."""
    if path is not None:
        _format(path, "a digit grid", option)


def _pillow_bytes(img: Image.Image, fmt: str) -> bytes:
    """The image encoded as ``fmt``; SVG embeds the PNG, drawn with sharp pixels at its own size."""
    buf = io.BytesIO()
    rgb = img.convert("RGB")
    if fmt == "jpeg":
        rgb.save(buf, "JPEG", quality=95, subsampling=0)
    elif fmt == "pdf":
        rgb.save(buf, "PDF", resolution=96.0)
    elif fmt == "svg":
        png = io.BytesIO()
        rgb.save(png, "PNG")
        w, h = rgb.size
        data = base64.b64encode(png.getvalue()).decode("ascii")
        svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            f'<image width="{w}" height="{h}" style="image-rendering:pixelated" '
            f'href="data:image/png;base64,{data}"/></svg>\n'
        )
        return svg.encode("ascii")
    else:
        rgb.save(buf, "PNG")
    return buf.getvalue()


def save_picture(picture: Image.Image | Any, path: str | os.PathLike[str]) -> str:
    """Write a Pillow image or a matplotlib figure atomically in the format of ``path``'s suffix.

    Returns the format written. An unknown suffix or an unwritable path is one :class:`PyfluxError`."""
    fmt = picture_format(path)
    if isinstance(picture, Image.Image):
        data = _pillow_bytes(picture, fmt)
    else:  # a matplotlib Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # optional extra, slow to import

        FigureCanvasAgg(picture)
        buf = io.BytesIO()
        picture.savefig(buf, format=fmt, metadata=_no_dates(fmt))
        data = buf.getvalue()
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as e:
        raise PyfluxError(os_error_line(e, path, "cannot write")) from None
    return fmt


def _no_dates(fmt: str) -> dict[str, Any] | None:
    """Leave out the creation date matplotlib writes into SVG and PDF: the same figure, the same bytes."""
    return {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)


# --- what every title says about the model ------------------------------------------------------------


def model_details(model: Model | None) -> str:
    """``numpy backend · test accuracy 92.27%``: what the model file records beside the recipe."""
    meta = getattr(model, "meta", None) or {}
    parts = []
    if meta.get("backend"):
        parts.append(f"{meta['backend']} backend")
    if isinstance(meta.get("test_accuracy"), int | float):
        parts.append(f"test accuracy {meta['test_accuracy']:.2%}")
    return " · ".join(parts)


def model_name(model: Model | None) -> str:
    """The recipe's name with what was changed in it (``flux-tutorial (hidden 64)``); ``a model`` for an
    object without a recipe."""

    recipe = getattr(model, "recipe", None)
    if isinstance(recipe, Recipe):
        return recipe_label(recipe)
    return str(recipe.name) if recipe is not None else "a model"


def model_summary(model: Model | None) -> str:
    """``flux-tutorial · numpy backend · test accuracy 92.27%``."""
    return " · ".join(p for p in (model_name(model), model_details(model)) if p)
