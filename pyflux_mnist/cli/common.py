"""Helpers shared by the CLI modules: options, progress on stderr, JSON on stdout."""

from __future__ import annotations

import json
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
    click.echo(json.dumps(obj, indent=2, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def progress(msg: str) -> None:
    """A line of progress on stderr (stdout stays clean for results and --json)."""
    click.echo(msg, err=True)
