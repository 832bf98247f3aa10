"""Write files so that a reader sees either the old file or the complete new one, never half of one.

Every output (models, checkpoints, pictures, JSON and Markdown results, downloads) is written here, so the
rules live once:

* **What may be replaced.** A missing path or a regular file. Anything else that exists (a device node such
  as ``/dev/null``, a FIFO, a socket, a folder) is refused in one line, never replaced, even as root. A
  symbolic link is written *through*: the file it points to is replaced atomically and the link stays (a
  link to something that is not a regular file, or to nothing, is refused). See :func:`output_target`.
* **The temporary** is ``.<name>.pyflux-tmp.<pid>.<random>.tmp`` beside the file really written
  (``<name>`` shortened so the whole stays within 255 bytes).
* **Leftovers.** A process killed outright (SIGKILL, power loss) leaves its temporary behind; the next
  save *of the same target* removes it. Only names unmistakably ours and of that target are touched: the
  target's own name plus our marker, owned by this user, a regular file, and either untouched for a minute
  with its process gone or untouched for a day. Nothing else in the folder is ever looked at.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .userpaths import NAME_MAX, UserPathError, escape, file_kind

# mkstemp creates files readable by their owner only; a saved model or picture should get the permissions
# any other new file would (read once, at import, while nothing else runs).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: What makes a temporary unmistakably ours (beside the target's own name).
MARKER = "pyflux-tmp"
#: ``.`` + ``.pyflux-tmp`` + ``.`` + up to 20 pid digits + ``.`` + mkstemp's 8 random characters + ``.tmp``.
_TMP_OVERHEAD = 1 + 1 + len(MARKER) + 1 + 20 + 1 + 8 + 4
#: mkstemp's random part (``tempfile._RandomNameSequence``): 8 of ``a-z0-9_``.
_RANDOM = r"[a-z0-9_]{8}"
#: A temporary whose process is gone is stale once untouched this long (a save writes continuously).
DEAD_OWNER_AGE_S = 60.0
#: Any temporary of ours untouched this long is stale (its pid may have been reused since).
MAX_AGE_S = 24 * 3600.0


def _short_name(name: str) -> str:
    """``name``, cut (on a character boundary) so that its temporary's name fits in NAME_MAX bytes."""
    room = NAME_MAX - _TMP_OVERHEAD
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = os.fsdecode(encoded[:room].decode("utf-8", "ignore").encode())
    return name


def temp_prefix(name: str) -> str:
    """``.<name>.pyflux-tmp.<pid>.``: the start of the temporary's name for a target called ``name``."""
    return f".{_short_name(name)}.{MARKER}.{os.getpid()}."


def _temporaries_of(name: str) -> re.Pattern[str]:
    """The names of our temporaries for a target called ``name`` (any pid); group 1 is the pid."""
    return re.compile(rf"^\.{re.escape(_short_name(name))}\.{MARKER}\.(\d{{1,20}})\.{_RANDOM}\.tmp$")


def output_target(path: str | os.PathLike[str]) -> Path:
    """The file a save to ``path`` really replaces: ``path`` itself, or the file a symbolic link points to.

    Raises :class:`UserPathError` (one line) for an existing path that is not a regular file, a link to
    one, or a link to nothing: a save must never replace a device node, a FIFO or a link itself.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError:
        return path  # not a directory, permission...: the write itself says so, in the caller's words
    if stat.S_ISREG(mode):
        return path
    if not stat.S_ISLNK(mode):
        raise UserPathError(
            escape(f"{path} is {file_kind(mode)}, not a regular file; refusing to replace it")
        )
    real = Path(os.path.realpath(path))
    try:
        real_mode = os.stat(real).st_mode
    except OSError:
        raise UserPathError(
            escape(f"{path} is a symbolic link to {real}, which does not exist; refusing to write through it")
        ) from None
    if not stat.S_ISREG(real_mode):
        raise UserPathError(
            escape(
                f"{path} is a symbolic link to {real}, which is {file_kind(real_mode)}; "
                "refusing to write through it"
            )
        )
    return real


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside the file ``path`` names; on success fsync and rename it over that file.

    ``path`` is checked by :func:`output_target` first (and again just before the rename). On any exception
    the temporary file is removed and ``path`` is left untouched.
    """
    target = output_target(path)
    sweep_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            yield f
            f.flush()
            os.fsync(f.fileno())
        if output_target(target) != target:  # swapped for a link or a special file meanwhile
            raise UserPathError(escape(f"{path} changed while it was written; not replacing it"))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process (or a number we cannot ask about): leave it
    return True


def sweep_stale_temporaries(target: str | os.PathLike[str], now: float | None = None) -> list[Path]:
    """Remove the leftover temporaries of saves of ``target`` (see the module docstring); returns them.

    Never raises: a folder we cannot list or a file we cannot remove is simply left as it is.
    """
    target = Path(target)
    ours = _temporaries_of(target.name)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        m = ours.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            age = now - st.st_mtime
            pid = int(m.group(1))
            if age > MAX_AGE_S or (age > DEAD_OWNER_AGE_S and pid != os.getpid() and not _pid_alive(pid)):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
