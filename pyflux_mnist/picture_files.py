"""What a picture's file name promises: the format its suffix names, and what writing that needs.

Checked before any work (a ``train --plot`` run must not train for minutes and then fail to draw), and
used by the save calls so that ``loss.svg`` is an SVG, not PNG bytes under another name.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import PyfluxError

#: Suffix → matplotlib format for charts (loss curve, confusion matrix); no suffix means PNG.
CHART_FORMATS = {"": "png", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}
#: Digit grids keep every pixel exact (a test reads them back): PNG only.
GRID_FORMATS = {"": "png", ".png": "png"}
NO_MATPLOTLIB = "charts need matplotlib, which is not installed: pip install 'pyflux-mnist[plots]'"


def _format(path: str | os.PathLike[str], formats: dict[str, str], what: str, option: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        names = ", ".join(sorted({s for s in formats if s}))
        where = f"{option} " if option else ""
        raise PyfluxError(f"{where}{path}: {what} can be written as {names}, not {suffix}")
    return formats[suffix]


def chart_format(path: str | os.PathLike[str], option: str = "") -> str:
    """matplotlib's name for the format ``path``'s suffix asks for ('png', 'jpeg', 'svg', 'pdf')."""
    return _format(path, CHART_FORMATS, "a chart", option)


def check_chart_output(path: str | os.PathLike[str] | None, option: str) -> None:
    """Before the work: the suffix is one we write, and matplotlib is installed."""
    if path is None:
        return
    chart_format(path, option)
    if importlib.util.find_spec("matplotlib") is None:
        raise PyfluxError(f"{option} {path}: {NO_MATPLOTLIB}")


def check_grid_output(path: str | os.PathLike[str] | None, option: str) -> None:
    """Before the work: a digit grid goes to a .png (or a name without a suffix)."""
    if path is not None:
        _format(path, GRID_FORMATS, "a digit grid", option)
