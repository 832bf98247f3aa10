"""The progress :func:`~pyflux_mnist.training.train` shows by itself, where a person is watching.

``train()`` is the API's one long call (seconds on NumPy, a minute with Julia's first compile), so a
person at a notebook or a terminal sees a tqdm bar (the convention in notebooks: a widget bar where
ipywidgets is installed, else tqdm's text bar). Anything else stays silent: a caller that passes its own
``on_progress`` (the CLI, the web page, tests), a script whose stderr goes to a log or a pipe, a child
process. As in the CLI's :class:`~pyflux_mnist.cli.progress.StepProgress`, the first update carries the
warm-up (set-up, Julia compiling the first gradient), so the bar's rate and ETA start after it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .training import ProgressFn


def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, JupyterLab, VS Code; tqdm.auto's own test)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get is not None and get() is not None


def watcher() -> str | None:
    """Where a person would see a bar: ``"notebook"``, ``"terminal"`` (stderr is a TTY) or ``None``."""
    if in_notebook():
        return "notebook"
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return "terminal" if isatty is not None and isatty() else None
    except ValueError:  # a closed stream
        return None


def _bar_class(where: str) -> Any:
    if where == "notebook" and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    from tqdm.std import tqdm as text_tqdm  # in a notebook without ipywidgets: text on the cell's stderr

    return text_tqdm


class StepBar:
    """A tqdm bar over a run's steps, called as ``bar(done, total, loss)``; its first call ends the
    warm-up."""

    def __init__(self, label: str, total: int, where: str) -> None:
        self.started = time.monotonic()
        self.warm = False
        self.warm_up = ""
        self.bar = _bar_class(where)(
            desc=label, total=total, unit="step", dynamic_ncols=True, file=sys.stderr,
            postfix="set-up and first step (the warm-up)",
        )  # fmt: skip

    def __call__(self, done: int, total: int, loss: float) -> None:
        first = not self.warm
        if first:
            self.warm = True
            warm_up = time.monotonic() - self.started
            self.bar.reset(total=total)  # rate and ETA count from here: the warm-up is not a step's time
            self.bar.n = self.bar.last_print_n = self.bar.initial = done
            self.warm_up = f"warm-up {warm_up:.1f} s"
        else:
            self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(f"loss {loss:.4f}, {self.warm_up}", refresh=first or done >= total)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def progress_for(on_progress: ProgressFn | None, label: str, total: int) -> Iterator[ProgressFn | None]:
    """The caller's ``on_progress`` if it gave one; else a :class:`StepBar` where a person is watching;
    else ``None`` (silent)."""
    where = watcher() if on_progress is None else None
    if where is None:
        yield on_progress
        return
    bar = StepBar(label, total, where)
    try:
        yield bar
    finally:
        bar.close()
