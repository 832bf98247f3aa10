"""The exceptions users see. Each carries one line that says what went wrong and what to do.

The CLI prints ``str(error)`` of any :class:`PyfluxError` on one line and exits 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable

#: The signals that end a run cleanly (at a step boundary, with a final checkpoint when there is one),
#: each with the words its one line starts with: Ctrl-C, ``kill`` / a scheduler's time limit, a closed
#: terminal. The exit code is 128 + the signal, as shells report it: 130, 143, 129.
STOP_SIGNALS: dict[int, str] = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated (SIGTERM)",
    **({signal.SIGHUP: "hung up (SIGHUP)"} if hasattr(signal, "SIGHUP") else {}),
}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'torch'?)`` for a near miss such as ``pytorch``, else ``""``."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not close:  # "pytorch" vs "torch": a known name inside the typed one (or the other way round)
        close = [c for c in choices if c in name or (len(name) >= 3 and name in c)][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(what: str, name: object, choices: Iterable[str], shown: str | None = None) -> SpecError:
    """The one refusal of a name that is not one of ``choices``: ``unknown backend 'pytorch' (did you mean
    'torch'?); choose one of: numpy, flux, torch, jax``. ``shown``: the list as it should be printed (with
    why each cannot run, say)."""
    choices = list(choices)
    hint = did_you_mean(str(name), choices)
    return SpecError(f"unknown {what} {name!r}{hint}; choose one of: {shown or ', '.join(choices)}")


#: 128 + SIGINT: the exit status shells report for Ctrl-C, which every command and the web page's
#: training child use when a run is stopped.
INTERRUPT_EXIT = 128 + 2


class PyfluxError(Exception):
    """Base class for every error meant for a user, not a developer."""


class DataError(PyfluxError):
    """MNIST files missing, unreadable, corrupt, or not MNIST."""


class SpecError(PyfluxError, ValueError):
    """A model description, recipe or training option that cannot work."""


class BackendUnavailable(PyfluxError):
    """A backend that cannot run here (missing package, no Julia...)."""


class ModelFileError(PyfluxError):
    """A model file that is not one of ours, or is damaged, or is hostile."""


class DivergedError(PyfluxError):
    """Training produced a NaN or Inf loss."""


class TrainingInterrupted(PyfluxError):
    """Ctrl-C, SIGTERM or SIGHUP during training (:data:`STOP_SIGNALS`): the run stopped cleanly between two
    steps (exit code 128 + the signal, as shells report it).

    The message says what happened; each command adds what is true for it (``train`` can resume from a
    checkpoint, ``tutorial`` and ``reproduce`` cannot) with :meth:`with_advice`.
    """

    exit_code = INTERRUPT_EXIT

    def __init__(
        self,
        message: str,
        steps_done: int = 0,
        total_steps: int = 0,
        checkpoint: str | None = None,
        exit_code: int = INTERRUPT_EXIT,
    ) -> None:
        super().__init__(message)
        self.steps_done, self.total_steps, self.checkpoint = steps_done, total_steps, checkpoint
        self.exit_code = exit_code

    def with_advice(self, advice: str) -> TrainingInterrupted:
        """The same interruption, its message followed by ``advice``."""
        return TrainingInterrupted(
            f"{self} {advice}", self.steps_done, self.total_steps, self.checkpoint, self.exit_code
        )


class ImageError(PyfluxError):
    """A user image that cannot be read or contains no digit."""


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of a message: library messages (NumPy's, Julia's) can span lines, a user
    error is one. An exception with no message gives its type's name."""
    line = next((s.strip() for s in str(error).splitlines() if s.strip()), "")
    if not line and isinstance(error, BaseException):
        return type(error).__name__
    return line


def unexpected_line(error: BaseException) -> str:
    """An unexpected error in a report row: ``RuntimeError: its first line`` (the type alone when it has
    no message)."""
    line, kind = first_line(error), type(error).__name__
    return kind if line == kind else f"{kind}: {line}"
