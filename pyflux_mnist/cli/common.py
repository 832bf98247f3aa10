"""Helpers shared by the CLI modules: options, progress on stderr, JSON on stdout."""

from __future__ import annotations

import json
import math
from typing import Any

import click

ERROR_EXIT = 1
INTERRUPT_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C


def data_dir_option(f):
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=str),
        default=None,
        help="Directory holding the four MNIST IDX files (.gz or raw). Default: $PYFLUX_MNIST_DATA, "
        "then the cache.",
    )(f)


def offline_option(f):
    return click.option(
        "--offline", is_flag=True, default=False, help="Never download (also: PYFLUX_MNIST_OFFLINE=1)."
    )(f)


def echo_json(obj: Any) -> None:
    """Strict JSON on stdout: a NaN or Inf (which ``json`` would print as the non-JSON ``NaN``) becomes
    ``null`` ("not measured"), so every consumer can parse it."""
    click.echo(json.dumps(strict_json(obj), indent=2, default=_jsonable, allow_nan=False))


def strict_json(x: Any) -> Any:
    """``x`` with every non-finite float replaced by ``None`` (NumPy arrays and scalars included)."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return x


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def progress(msg: str) -> None:
    """A line of progress on stderr (stdout stays clean for results and --json)."""
    click.echo(msg, err=True)
