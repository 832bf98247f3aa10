"""``serve``: the local web page (draw, photo, look inside, train); needs the ``web`` extra."""

from __future__ import annotations

import contextlib

import click

from ..errors import PyfluxError, TrainingInterrupted
from .common import data_dir_option, progress


@click.command()
@click.argument("model_path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (this machine only)."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@data_dir_option
def serve(model_path, host, port, open_browser, data_dir) -> None:
    """Serve a page to draw a digit, upload a photo, look inside the network and train a new one.

    With no MODEL it uses the last model it trained (kept in the cache) or trains one first (NumPy, keras
    recipe, one epoch). It prints the URL and serves until Ctrl-C.
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise PyfluxError("serve needs the web extra: pip install 'pyflux-mnist[web]'") from None
    from ..web.serve import serve as run_server  # starlette and uvicorn: the web extra, only for serve

    with contextlib.suppress(KeyboardInterrupt, TrainingInterrupted):  # Ctrl-C: one line, exit 0
        run_server(model_path, host, port, open_browser, data_dir, progress)
    click.echo("stopped", err=True)


COMMANDS = [serve]
