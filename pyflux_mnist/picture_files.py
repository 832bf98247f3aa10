"""Picture files in the format their suffix names (PNG, JPEG, SVG, PDF), written atomically; and the
words every picture's title carries about its model.

Digit grids are Pillow images and charts are matplotlib figures; both go through :func:`save_picture`, so
``--plot loss.jpg`` writes a JPEG and ``-o weights.svg`` an SVG. :func:`picture_format` refuses any other
suffix with one line, and the CLI calls it before a long run so that no run is lost to a bad name.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .atomic import atomic_write
from .errors import PyfluxError

#: Suffix → format name (Pillow's and matplotlib's spelling differ only in case).
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".svg": "SVG", ".pdf": "PDF"}
SUFFIXES = ", ".join(list(FORMATS)[:-1]) + f" or {list(FORMATS)[-1]}"


def picture_format(path: str | os.PathLike[str]) -> str:
    """``PNG``, ``JPEG``, ``SVG`` or ``PDF`` from the file name's suffix; any other suffix is an error."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        named = f"{Path(path).suffix} is not a picture format written here" if suffix else "no suffix"
        raise PyfluxError(f"cannot write the picture {path}: {named}; name it {SUFFIXES}")
    return FORMATS[suffix]


def _pillow_bytes(img: Image.Image, fmt: str) -> bytes:
    """The image encoded as ``fmt``; SVG embeds the PNG, drawn with sharp pixels at its own size."""
    buf = io.BytesIO()
    rgb = img.convert("RGB")
    if fmt == "JPEG":
        rgb.save(buf, "JPEG", quality=95, subsampling=0)
    elif fmt == "PDF":
        rgb.save(buf, "PDF", resolution=96.0)
    elif fmt == "SVG":
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
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(picture)
        buf = io.BytesIO()
        picture.savefig(buf, format=fmt.lower(), metadata=_no_dates(fmt))
        data = buf.getvalue()
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as e:
        raise PyfluxError(f"cannot write {path}: {e.strerror or e}") from None
    return fmt


def _no_dates(fmt: str) -> dict[str, Any] | None:
    """Leave out the creation date matplotlib writes into SVG and PDF: the same figure, the same bytes."""
    return {"SVG": {"Date": None}, "PDF": {"CreationDate": None}}.get(fmt)


# --- what every title says about the model ------------------------------------------------------------


def model_details(model: Any) -> str:
    """``numpy backend · test accuracy 92.27%``: what the model file records beside the recipe."""
    meta = getattr(model, "meta", None) or {}
    parts = []
    if meta.get("backend"):
        parts.append(f"{meta['backend']} backend")
    if isinstance(meta.get("test_accuracy"), int | float):
        parts.append(f"test accuracy {meta['test_accuracy']:.2%}")
    return " · ".join(parts)


def model_name(model: Any) -> str:
    """The recipe's name (``a model`` for an object without one)."""
    recipe = getattr(model, "recipe", None)
    return str(recipe.name) if recipe is not None else "a model"


def model_summary(model: Any) -> str:
    """``flux-tutorial · numpy backend · test accuracy 92.27%``."""
    return " · ".join(p for p in (model_name(model), model_details(model)) if p)
