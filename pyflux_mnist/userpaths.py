"""Paths a user gives us: how to open them safely and how to name them in a one-line error.

One place turns an ``OSError`` on a user's path into one line that names the path (with control characters
escaped, so a file name holding a newline or an ANSI escape cannot break or forge the line), and one place
refuses what is not a regular file before reading it (a FIFO would block ``open`` forever, a device would
stream without end).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import PyfluxError

#: The longest file name (one path component, in bytes) we write; most Linux file systems allow 255.
NAME_MAX = 255


def escape(text: object) -> str:
    """``text`` with control characters (newline, tab, ESC, DEL, C1...) written as ``\\n``, ``\\x1b``...

    Untrusted strings (file names, metadata read from a file) go through this before they are printed, so
    they can neither split one error line into two nor send escape sequences to the terminal.
    """
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def os_error_line(e: OSError, path: object | None = None, doing: str = "cannot use") -> str:
    """One line for an ``OSError`` on a user's path: ``cannot use PATH: Permission denied``."""
    where = path if path is not None else (e.filename if e.filename is not None else None)
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno == errno.ENAMETOOLONG:
        reason = "file name too long"
    if where is None:
        return escape(f"{doing} a file: {reason}")
    return escape(f"{doing} {where}: {reason}")


class UserPathError(PyfluxError):
    """A user's path that cannot be read or written (permissions, not a directory, name too long...)."""


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], what: str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (checked on the open descriptor, so a file
    swapped in between cannot slip through). ``O_NONBLOCK`` keeps a FIFO from blocking the open itself.

    Raises ``FileNotFoundError``/``PermissionError``... as they come (callers word them), and
    :class:`UserPathError` for a FIFO, device, socket or directory.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UserPathError(escape(f"{path} is {file_kind(mode)}, not a {what}"))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_name_length(path: str | os.PathLike[str], what: str) -> None:
    """Refuse an output name too long for the file system, before the work that would produce it.

    (Saves write a temporary file beside the target first; :mod:`pyflux_mnist.atomic` keeps that name
    within the same limit.)
    """
    name = Path(path).name
    if len(os.fsencode(name)) > NAME_MAX:
        raise UserPathError(
            escape(f"cannot write the {what} to {path}: the file name is longer than {NAME_MAX} bytes")
        )


def make_dirs(directory: Path) -> list[Path]:
    """``mkdir -p`` that says what is in the way; returns the folders it created, outermost first (so a
    caller can remove them again if what it came to do fails)."""
    created = []
    d = directory
    while d != d.parent and not d.is_dir():
        if d.is_symlink() and not d.exists():
            raise UserPathError(escape(f"cannot create {directory}: {d} is a broken symbolic link"))
        if d.exists():
            kind = file_kind(d.stat().st_mode) if not d.is_file() else "a file"
            raise UserPathError(escape(f"cannot create {directory}: {d} is {kind}, not a folder"))
        created.append(d)
        d = d.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserPathError(os_error_line(e, e.filename or directory, "cannot create")) from None
    return created[::-1]
