"""Helpers shared by the CLI modules: options, progress on stderr, JSON on stdout."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import settings
from ..atomic import output_target
from ..backends import REFERENCE, backend_names
from ..errors import PyfluxError, did_you_mean
from ..recipes import DEFAULT_RECIPE, RECIPES
from ..userpaths import check_name_length, escape

F = TypeVar("F", bound=Callable[..., Any])

ERROR_EXIT = 1
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, what `cmd | head` gives a program that dies of the signal


class SuggestingGroup(click.Group):
    """A click group whose unknown-command error names the close command (click < 8.2 does not), and
    which, called with no arguments at all, prints its usage and exits 0 as git and pip do (click's
    default is exit code 2: a usage error, which no arguments is not)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            commands = self.list_commands(ctx)
            hint = did_you_mean(name, commands) or f" (commands: {', '.join(commands)})"
            ctx.fail(f"no such command {name!r}{hint}")
        return super().resolve_command(ctx, args)


def without_name(message: str, name: str) -> str:
    """``message`` without a leading ``name``, for a line or a record that names the file already:
    ``"x.png: no ink found"`` → ``"no ink found"``; ``"x.txt is not an image"`` → ``"not an image"`` (an
    "it" in its place would leave a reader asking what "it" is)."""
    for lead in (f"{name}: ", f"{name} is ", f"{name} "):
        if message.startswith(lead):
            return message[len(lead) :]
    return message


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=str),
        default=None,
        help=f"Directory holding the four MNIST IDX files (.gz or raw). Default: ${settings.DATA.name}, "
        "then the cache.",
    )(f)


def offline_option(f: F) -> F:
    return click.option(
        "--offline", is_flag=True, default=False, help=f"Never download (also: {settings.OFFLINE.name}=1)."
    )(f)


def json_option(what: str = "one JSON object") -> Callable[[F], F]:
    """``--json``: print ``what`` on stdout (parameter ``as_json``); one declaration for every command."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} on stdout.")


def backend_option(f: F) -> F:
    """``--backend NAME``: one of the registry's backends, the reference one by default."""
    return click.option(
        "--backend", default=REFERENCE, show_default=True, help=f"One of: {', '.join(backend_names())}."
    )(f)


class Loose(click.ParamType):
    """``parse(text)`` when the text reads as that, else the text itself, which the run module then refuses
    in the same words as the same value from the Python API or the web API (``steps must be a whole number,
    got 'ten'``), not in click's own."""

    def __init__(self, parse: Callable[[str], Any], metavar: str) -> None:
        self.parse, self.name = parse, metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.parse(value) if isinstance(value, str) else value
        except ValueError:
            return value


WHOLE, NUMBER = Loose(int, "integer"), Loose(float, "float")
#: ``--hidden 32`` or ``512,256,128``.
WIDTHS = Loose(lambda text: tuple(int(w) for w in text.split(",")), "widths")


def recipe_option(f: F) -> F:
    """``--recipe NAME``: a registered recipe, the default one unless given."""
    return click.option(
        "--recipe", default=DEFAULT_RECIPE, show_default=True, help=f"One of: {', '.join(RECIPES)}."
    )(f)


def seed_option(f: F) -> F:
    return click.option(
        "--seed", type=WHOLE, default=0, show_default=True, help="Seed for initial weights and batches."
    )(f)


def check_writable(path: str | None, what: str) -> None:
    """Fail before hours of training, not after: the output's folder must exist and be writable, and the
    output itself must be something a save may replace (:func:`~pyflux_mnist.atomic.output_target`: never
    a device node, FIFO or folder; a symbolic link is written through, and this says so)."""
    if path is None:
        return
    check_name_length(path, what)
    if Path(path).is_dir():
        raise PyfluxError(f"cannot write the {what} to {path}: it is a directory")
    try:
        target = output_target(path)
    except PyfluxError as e:
        raise PyfluxError(f"cannot write the {what}: {e}") from None
    if target != Path(path):
        progress(
            escape(
                f"note: {path} is a symbolic link; the {what} will replace the file it points to: {target}"
            )
        )
    parent = target.resolve().parent
    if not parent.is_dir():
        there = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if there is not None and not there.is_dir():
            raise PyfluxError(f"cannot write the {what} to {path}: {there} is not a folder")
        raise PyfluxError(f"cannot write the {what} to {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PyfluxError(f"cannot write the {what} to {path}: folder {parent} is not writable")


def check_npz_output(path: str | None, option: str, what: str) -> None:
    """A model or checkpoint is a ``.npz`` archive: a name that promises another format (``out.txt``,
    ``model.png``) is refused before the work, as picture names that promise a format we cannot write are."""
    if path is not None and Path(path).suffix.lower() != ".npz":
        raise PyfluxError(f"{option} {path}: a {what} is a .npz archive; give a name ending in .npz")


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
