"""The ``pyflux-mnist`` command: a click group; each command family lives in its own module.

User errors (:class:`~pyflux_mnist.errors.PyfluxError`) become one line on stderr and exit code 1; with
``--verbose`` the traceback is printed too. Usage errors are click's (exit code 2). Ctrl-C exits 130; a
reader that stops reading our output (``| head``) ends the command quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import os
import select
import sys
import traceback
from typing import Any

import click

from ..errors import INTERRUPT_EXIT, PyfluxError
from ..userpaths import escape, os_error_line
from ..version import __version__
from . import bench as bench_commands
from . import data as data_commands
from . import doctor as doctor_commands
from . import images as image_commands
from . import reproduce as reproduce_commands
from . import serve as serve_commands
from . import train as train_commands
from .common import BROKEN_PIPE_EXIT, ERROR_EXIT, SuggestingGroup


class Group(SuggestingGroup):
    """A click group that turns our own exceptions into one clean line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PyfluxError as e:
            self._fail(ctx, str(e), getattr(e, "exit_code", ERROR_EXIT))
        except OSError as e:  # a user's path we could not create, read or write: name it, in one line
            if isinstance(e, BrokenPipeError) and _stdout_gone():  # our reader went away (`... | head -1`)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush too
                ctx.exit(BROKEN_PIPE_EXIT)
            self._fail(ctx, os_error_line(e), ERROR_EXIT)
        except MemoryError:
            self._fail(
                ctx,
                "out of memory (a smaller --hidden, --batch-size or --steps needs less; "
                "or raise the process's memory limit)",
                ERROR_EXIT,
            )
        except KeyboardInterrupt:  # Ctrl-C outside a training loop (which stops cleanly by itself)
            click.echo("\nError: interrupted", err=True)
            ctx.exit(INTERRUPT_EXIT)

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        """One line on stderr (control characters in names escaped), the traceback only with --verbose."""
        if ctx.obj and ctx.obj.get("verbose"):
            traceback.print_exc()
        click.echo(f"Error: {escape(message)}", err=True)
        ctx.exit(code)


def _stdout_gone() -> bool:
    """Whether standard output is a pipe nobody reads any more (and not some other pipe of ours): the
    write end of a pipe whose readers have all gone polls as an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here, or no real stdout
        return False


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyflux-mnist")
@click.option("-v", "--verbose", is_flag=True, help="Show full tracebacks and backend details on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Train the classic Flux.jl MNIST network from Python, with a NumPy twin and PyTorch as reference."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def _register() -> None:
    for module in (
        train_commands,
        data_commands,
        image_commands,
        reproduce_commands,
        bench_commands,
        doctor_commands,
        serve_commands,
    ):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="pyflux-mnist")


if __name__ == "__main__":  # pragma: no cover
    main()
