"""Progress of a training run on stderr, fit for a terminal and for a log.

In a terminal: a bar with an ETA. The first update is counted apart: it carries the warm-up (threads
starting, Julia compiling the first gradient), and an ETA computed from it would promise minutes for a run
of seconds. Elsewhere (a log file, CI, a pipe): one line at most every ``interval`` seconds, plus the last,
as the Flux tutorial's own ``throttle(evalcb, 10)`` does, instead of one line per step.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import click

#: Seconds between two progress lines when stderr is not a terminal (the tutorial's throttle).
LOG_INTERVAL_S = 10.0


class StepProgress:
    """Call it as ``progress(steps done, total steps, latest loss)``; :meth:`close` when the run ends."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        resumed_at: int = 0,
    ) -> None:
        self.label = label
        self.resumed_at = resumed_at  # steps a checkpoint had done: the warm-up's steps are counted after it
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.last_line = -math.inf
        self.first: int | None = None  # steps done by the first (warm-up) update
        self.bar: Any = None
        if self.tty:
            click.echo(
                f"{label}: {self._resumed()}set-up and first step (the warm-up)...",
                file=self.stream,
                nl=False,
            )

    def __call__(self, done: int, total: int, loss: float) -> None:
        now = self.clock()
        if self.first is None:
            self.first = done
            new = done - self.resumed_at
            steps = "step" if new == 1 else f"{new} steps"
            if not self.tty:
                self._line(
                    done, total, loss, now, f" ({self._resumed()}set-up and first {steps}: the warm-up)"
                )
                return
            click.echo(f" {now - self.started:.1f} s", file=self.stream)
            if done < total:
                # The bar counts the steps after the warm-up (so the ETA is theirs); the label, every step.
                self.bar = click.progressbar(
                    length=total - done, label=self._bar_label(done, total, loss), file=self.stream,
                    show_eta=True,
                ).__enter__()  # fmt: skip
            return
        if self.bar is not None:
            self.bar.label = self._bar_label(done, total, loss)
            self.bar.update(done - self.first - self.bar.pos)
            if done >= total:
                self.close()
        elif not self.tty and (done >= total or now - self.last_line >= self.interval):
            self._line(done, total, loss, now)

    def _resumed(self) -> str:
        return f"resumed after step {self.resumed_at}; " if self.resumed_at else ""

    def _bar_label(self, done: int, total: int, loss: float) -> str:
        return f"{self.label} step {done:>{len(str(total))}}/{total} loss {loss:.4f}"

    def _line(self, done: int, total: int, loss: float, now: float, extra: str = "") -> None:
        self.last_line = now
        click.echo(
            f"{self.label}: step {done}/{total}, loss {loss:.4f}, {now - self.started:.0f} s{extra}",
            file=self.stream,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
