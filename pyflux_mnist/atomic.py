"""Write files so that a reader sees either the old file or the complete new one, never half of one.

The temporary file is ``.<name>.<pid>.<random>.tmp`` beside the target (``<name>`` shortened so the whole
stays within 255 bytes). A process killed outright (SIGKILL, power loss) leaves it behind; the next save
into the same folder removes such leftovers, and only ours: names of exactly that pattern whose process is
gone (and which have not been touched for a minute), or which are a day old.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# mkstemp creates files readable by their owner only; a saved model or picture should get the permissions
# any other new file would (read once, at import, while nothing else runs).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: Longest file name the temporary may have (bytes): the usual NAME_MAX.
_NAME_MAX = 255
#: ``.`` + up to 20 pid digits + ``.`` + mkstemp's 8 random characters + ``.tmp`` + the leading ``.``.
_TMP_OVERHEAD = 1 + 1 + 20 + 1 + 8 + 4
#: Our temporaries: ``.<name>.<pid>.<8 random>.tmp``.
_TMP_RE = re.compile(r"^\..*\.(\d{1,20})\.[a-z0-9_]{8}\.tmp$")
#: A temporary whose process is gone is stale once untouched this long (a save writes continuously).
DEAD_OWNER_AGE_S = 60.0
#: Any temporary of ours untouched this long is stale (its pid may have been reused since).
MAX_AGE_S = 24 * 3600.0


def temp_prefix(name: str) -> str:
    """``.<name>.<pid>.``, with ``name`` cut (on a character boundary) so the temporary name fits."""
    room = _NAME_MAX - _TMP_OVERHEAD
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = os.fsdecode(encoded[:room].decode("utf-8", "ignore").encode())
    return f".{name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    sweep_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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


def sweep_stale_temporaries(folder: Path, now: float | None = None) -> list[Path]:
    """Remove our own leftover temporaries in ``folder`` (see the module docstring); returns them.

    Never raises: a folder we cannot list or a file we cannot remove is simply left as it is.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False) or st.st_uid != os.geteuid():
                continue
            age = now - st.st_mtime
            pid = int(m.group(1))
            if age > MAX_AGE_S or (age > DEAD_OWNER_AGE_S and pid != os.getpid() and not _pid_alive(pid)):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
