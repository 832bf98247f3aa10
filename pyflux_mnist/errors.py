"""The exceptions users see. Each carries one line that says what went wrong and what to do.

The CLI prints ``str(error)`` of any :class:`PyfluxError` on one line and exits 1; anything else is a bug
and keeps its traceback.
"""


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
    """Ctrl-C or SIGTERM during training: the run stopped cleanly between two steps (exit code 130 for
    SIGINT, 143 for SIGTERM, as shells report them)."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ImageError(PyfluxError):
    """A user image that cannot be read or contains no digit."""


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of a message: library messages (NumPy's, Julia's) can span lines, a user
    error is one. An exception with no message gives its type's name."""
    line = next((s.strip() for s in str(error).splitlines() if s.strip()), "")
    if not line and isinstance(error, BaseException):
        return type(error).__name__
    return line
