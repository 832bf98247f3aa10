"""Find, download, verify and load the four MNIST files.

Where the files come from, in order: an explicit ``data_dir``, ``$PYFLUX_MNIST_DATA``, the cache
(``$XDG_CACHE_HOME/pyflux-mnist``), then a download into the cache. The lessons behind the design
(see the loaders' issue trackers): checksums are of the *decompressed* bytes, so the mirrors' ``.gz``,
a re-compressed ``.gz`` and a raw file all pass; downloads go to a temporary file and are renamed only
once verified, so an interrupted or concurrent download never leaves a bad file under the real name;
a bad file in the cache heals itself by being downloaded again, while a user's own files are never
deleted; and nothing prompts or hangs (timeouts, one line per failing mirror).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import stat
import sys
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import settings
from .atomic import atomic_write
from .errors import DataError
from .http_deadline import Deadline, opener
from .idx import IdxError, read_idx_hashed
from .userpaths import escape, file_kind, make_dirs, os_error_line


class MnistFile(NamedTuple):
    """What one MNIST file must be once decompressed."""

    field: str  # the MnistData attribute it fills
    shape: tuple[int, ...]
    size: int  # bytes, decompressed
    sha256: str  # of the decompressed bytes


FILES: dict[str, MnistFile] = {
    "train-images-idx3-ubyte": MnistFile(
        "train_images",
        (60000, 28, 28),
        47040016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": MnistFile(
        "train_labels", (60000,), 60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    "t10k-images-idx3-ubyte": MnistFile(
        "test_images",
        (10000, 28, 28),
        7840016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": MnistFile(
        "test_labels", (10000,), 10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
TIMEOUT_S = 30.0  # per read: a mirror silent this long is given up
#: Per file and mirror, over the whole exchange (connect, status line, headers, body), whatever the mirror
#: sends: a drip-feed of one byte a second, or endless ``100 Continue``, never trips TIMEOUT_S.
DEADLINE_S = 600.0
_NO_VERIFY_HINT = (
    "if it is a deliberate MNIST-format dataset (e.g. Fashion-MNIST) use --no-verify (verify=False)"
)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value
class MnistData:
    """The whole of MNIST as read-only uint8 arrays, and where it came from."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8 in 0..9
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8 in 0..9
    source: str  # the directory the files were read from
    verified: bool  # whether every file matched the MNIST SHA-256


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pyflux-mnist``, by default ``~/.cache/pyflux-mnist`` (XDG ignores relative paths)."""
    base = settings.XDG_CACHE_HOME.get() or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "pyflux-mnist"


def mirrors() -> list[str]:
    """Base URLs to try in order: ``$PYFLUX_MNIST_MIRRORS`` (comma-separated) or :data:`MIRRORS`."""
    env = settings.MIRRORS.get() or ""
    urls = [u.strip() for u in env.split(",") if u.strip()]
    return urls or list(MIRRORS)


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return settings.OFFLINE.flag()


class _Place(NamedTuple):
    directory: Path
    origin: str  # "argument", settings.DATA.name or "cache"

    @property
    def is_cache(self) -> bool:
        return self.origin == "cache"

    @property
    def how(self) -> str:
        """Who named the directory, as a message says it: ``--data-dir`` or ``$PYFLUX_MNIST_DATA``."""
        return "--data-dir" if self.origin == "argument" else f"${settings.DATA.name}"


def _user_dir(value: str | os.PathLike[str], how: str) -> Path:
    """``~`` expanded; ``~nosuchuser`` is a one-line error, not a RuntimeError."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise DataError(escape(f"MNIST directory {value} (from {how}): cannot expand '~' there")) from None


def _place(data_dir: str | os.PathLike[str] | None) -> _Place:
    """Pick the directory; an explicit one must exist (never fall back silently to somewhere else)."""
    if data_dir is not None:
        place = _Place(_user_dir(data_dir, "--data-dir"), "argument")
    elif settings.DATA.raw():
        place = _Place(_user_dir(settings.DATA.raw() or "", f"${settings.DATA.name}"), settings.DATA.name)
    else:
        return _Place(cache_dir(), "cache")
    how = place.how
    try:
        st = place.directory.stat()
    except FileNotFoundError:
        raise DataError(escape(f"MNIST directory {place.directory} (from {how}) does not exist")) from None
    except OSError as e:
        raise DataError(os_error_line(e, place.directory, f"MNIST directory (from {how})")) from None
    if not stat.S_ISDIR(st.st_mode):
        raise DataError(
            escape(
                f"MNIST directory {place.directory} (from {how}) is {file_kind(st.st_mode)}, not a directory"
            )
        )
    return place


def _find(directory: Path, name: str) -> Path | None:
    """The raw file if present (fastest to read), else ``name.gz``."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_error(place: _Place, missing: list[str]) -> DataError:
    names = ", ".join(f"{n}[.gz]" for n in missing)
    if not place.is_cache:
        return DataError(f"{place.directory} (from {place.how}) lacks {names}")
    return DataError(
        f"MNIST not found and offline ({settings.OFFLINE.name} or --offline): put {names} in "
        f"{place.directory} or set {settings.DATA.name}"
    )


def _check(path: Path, name: str, verify: bool, hint: bool = True) -> tuple[np.ndarray, bool]:
    """Read one file and check it; returns (read-only array, checksum matched). Raises DataError."""
    array, sha, _ = read_idx_hashed(path)
    spec = FILES[name]
    matches = sha == spec.sha256
    if verify and not matches:
        raise DataError(
            f"{path}: not the MNIST {name} (SHA-256 {sha[:12]}… ≠ {spec.sha256[:12]}…)"
            + (f"; {_NO_VERIFY_HINT}" if hint else "")
        )
    if array.dtype != np.uint8 or array.shape != spec.shape:
        raise DataError(f"{path}: {array.dtype}{list(array.shape)} where MNIST has uint8{list(spec.shape)}")
    if "labels" in name and array.max() > 9:
        raise DataError(f"{path}: labels must be 0..9, found {int(array.max())}")
    array.flags.writeable = False
    return array, matches


def _obtain(
    place: _Place, name: str, *, verify: bool, offline: bool, progress: bool
) -> tuple[np.ndarray, bool]:
    """Read ``name`` from ``place``; in the cache, replace a missing or bad file by a fresh download."""
    for _attempt in range(2):  # a second look if another process replaced the file while we read it
        path = _find(place.directory, name)
        if path is None:
            break
        identity = _identity(path)
        try:
            return _check(path, name, verify, hint=not place.is_cache)
        except DataError as e:
            if not place.is_cache:
                raise
            if _identity(path) != identity:
                continue  # not the file we found bad: someone (a concurrent download) replaced it
            aside = _move_aside(path, identity)
            if aside is None:
                continue
            done = f"moved it aside to {aside}"
            if offline:
                raise DataError(f"{e}; {done}, run again online to download it") from e
            print(escape(f"pyflux-mnist: {e}; {done}, downloading again"), file=sys.stderr)
            break
    else:
        raise DataError(escape(f"{place.directory}: {name} keeps changing while it is read"))
    if path is None and (offline or not place.is_cache):
        raise _missing_error(place, [name])
    return _check(download(name, place.directory, progress=progress), name, verify)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one file from its replacement: device, inode, size, modification time."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _move_aside(path: Path, identity: tuple[int, int, int, int] | None) -> Path | None:
    """Rename a bad cache file to ``NAME.corrupt`` (or ``NAME.corrupt-2``...) beside it, never deleting it:
    the cache may be a link to a user's own folder, and the file may not be ours.

    Only the exact file found bad is moved: if what was renamed turns out to be another file (a concurrent
    download renamed its verified copy into place in between), it is put back (without overwriting a
    newer copy) and ``None`` is returned.
    """
    for k in range(1, 100):
        aside = path.with_name(f"{path.name}.corrupt" + (f"-{k}" if k > 1 else ""))
        if aside.exists() or aside.is_symlink():
            continue
        try:
            os.rename(path, aside)  # atomic: whatever is under `path` now is what moves
        except OSError as e:
            raise DataError(os_error_line(e, path, "cannot move the bad cache file aside:")) from None
        if _identity(aside) != identity:  # `path` was replaced between our check and the rename
            try:
                os.link(aside, path)  # put it back, unless yet another copy is there by now
            except FileExistsError:
                pass
            except OSError:  # no hard links here: rename it back (both copies are the good one)
                os.replace(aside, path)
                return None
            aside.unlink(missing_ok=True)
            return None
        return aside
    raise DataError(escape(f"{path}: too many .corrupt copies beside it; remove them"))


_MEMO: dict[tuple[Any, ...], MnistData] = {}


def _memo_key(place: _Place, verify: bool) -> tuple[Any, ...] | None:
    parts: list[Any] = [str(place.directory)]  # `source` differs even if files are shared
    for name in FILES:
        path = _find(place.directory, name)
        if path is None:
            return None
        st = path.stat()
        parts.append((str(path.resolve()), st.st_mtime_ns, st.st_size))
    return (*parts, verify)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    offline: bool | None = None,
    verify: bool = True,
    progress: bool = True,
) -> MnistData:
    """Load MNIST (see the module docstring for where from); downloads into the cache if need be.

    ``verify=False`` accepts MNIST-shaped files with other contents (e.g. Fashion-MNIST). Results are
    memoised per process on the files' paths, mtimes and sizes, so repeated calls cost a few ``stat``s.
    """
    place = _place(data_dir)
    offline = _offline(offline)
    missing = [n for n in FILES if _find(place.directory, n) is None]
    if missing and (offline or not place.is_cache):
        raise _missing_error(place, missing)
    key = _memo_key(place, verify)
    if key is not None:
        hit = _MEMO.get(key) or (None if verify else _MEMO.get((*key[:-1], True)))
        if hit is not None:
            return hit
    arrays: dict[str, np.ndarray] = {}
    all_match = True
    for name, spec in FILES.items():
        arrays[spec.field], matches = _obtain(place, name, verify=verify, offline=offline, progress=progress)
        all_match &= matches
    data = MnistData(**arrays, source=str(place.directory), verified=all_match)
    key = _memo_key(place, verify)
    if key is not None:
        if len(_MEMO) >= 4:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = data
    return data


def download_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, offline: bool | None = None, progress: bool = True
) -> Path:
    """Make sure the four verified files are in ``data_dir`` (default: ``$PYFLUX_MNIST_DATA`` if set,
    else the cache); returns the directory.

    Missing files are downloaded, also into a user's directory (created if need be, and removed again if
    the download fails and it is still empty); a bad file there is reported, not replaced. Nothing is
    fetched when all four are present and verified.
    """
    if data_dir is None and settings.DATA.raw():
        place = _place(None)  # the user's folder: it must exist, as for every other command
    elif data_dir is None:
        place = _Place(cache_dir(), "cache")
    else:
        place = _Place(_user_dir(data_dir, "--data-dir"), "argument")
    offline = _offline(offline)
    missing = [n for n in FILES if _find(place.directory, n) is None]
    if missing and offline:
        raise _missing_error(place._replace(origin="cache"), missing)
    created = make_dirs(place.directory)
    try:
        for name in FILES:
            if _find(place.directory, name) is None:
                download(name, place.directory, progress=progress)
            else:
                _obtain(place, name, verify=True, offline=offline, progress=progress)
    except BaseException:
        for d in reversed(created):  # only folders we made, and only while empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return place.directory


def download(name: str, directory: Path, *, progress: bool = True) -> Path:
    """Fetch ``name.gz`` from the first mirror that serves a verified copy; returns the final path.

    The bytes go to a temporary file beside the target, are checked on the fly (gzip integrity, size
    and SHA-256 of the decompressed stream), and only then renamed: concurrent or interrupted downloads
    can never leave a partial file under the real name. Each attempt is bounded in bytes (a gzip of the
    file cannot be much larger than the file) and in time (:data:`DEADLINE_S` over the whole exchange,
    whatever the mirror sends).
    """
    make_dirs(directory)
    target = directory / f"{name}.gz"
    failures = []
    for base in mirrors():
        url = base.rstrip("/") + f"/{name}.gz"
        deadline = Deadline(DEADLINE_S)
        try:
            with (
                deadline.running(),
                opener(deadline).open(url, timeout=TIMEOUT_S) as response,
                atomic_write(target) as out,
            ):
                _stream(response, out, name, progress)
                if deadline.expired:  # the last read may have ended cleanly when the sockets shut
                    raise DataError("deadline")
            return target
        except (OSError, http.client.HTTPException, DataError, ValueError) as e:
            # URLError, HTTPError and timeouts are OSErrors; IncompleteRead is an HTTPException.
            if deadline.expired:
                reason = f"took longer than {DEADLINE_S:.0f} s; giving up on this mirror"
            elif isinstance(e, urllib.error.HTTPError):
                reason = f"HTTP {e.code} {e.reason}"
            elif isinstance(e, urllib.error.URLError):
                reason = str(e.reason)
            else:
                reason = str(e) or type(e).__name__
            print(escape(f"pyflux-mnist: {url}: {reason}"), file=sys.stderr)
            failures.append(url)
    still_missing = [n for n in FILES if _find(directory, n) is None] or [name]
    names = ", ".join(f"{n}[.gz]" for n in still_missing)
    raise DataError(
        escape(
            f"could not download {name} from {len(failures)} mirror(s) (see above); put {names} in "
            f"{directory} or set {settings.DATA.name} / {settings.MIRRORS.name}"
        )
    )


def _stream(response: Any, out: Any, name: str, progress: bool) -> None:
    """Copy ``response`` to ``out`` while checking the decompressed stream against :data:`FILES`."""
    spec = FILES[name]
    total = int(response.headers.get("Content-Length") or 0)
    limit = max_download_bytes(spec)
    if total > limit:
        raise DataError(f"announces {total} bytes; a gzip of {name} is at most {limit}")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper; checks CRC and length at the end
    sha, size, received, shown = hashlib.sha256(), 0, 0, -1
    try:
        while chunk := response.read1(1 << 16):
            received += len(chunk)
            if received > limit:
                raise DataError(f"sent more than {limit} bytes, more than a gzip of {name} can be")
            out.write(chunk)
            try:
                data = inflate.decompress(chunk)
            except zlib.error as e:
                raise DataError(f"not a valid gzip file (an error page?): {e}") from e
            if inflate.eof and inflate.unused_data:
                raise DataError("more bytes after the end of the gzip file (not the MNIST file)")
            size += len(data)
            if size > spec.size:
                raise DataError(f"decompresses to more than the {spec.size} bytes of {name}")
            sha.update(data)
            if progress and total:
                shown = _bar(name, received, total, shown)
    finally:
        if shown >= 0:
            print(file=sys.stderr)
    if total and received != total:
        raise DataError(f"download cut short ({received} of {total} bytes)")
    if not inflate.eof or inflate.unused_data:
        raise DataError("not a complete gzip file (truncated, or an error page)")
    if size != spec.size or sha.hexdigest() != spec.sha256:
        raise DataError(f"checksum mismatch for {name} (corrupt, or changed upstream)")


def max_download_bytes(spec: MnistFile) -> int:
    """The most bytes a gzip of ``spec`` can take: stored (uncompressed) deflate blocks add 5 bytes per
    64 KiB, plus the gzip header and trailer; 1 % and 64 KiB of slack on top."""
    return spec.size + spec.size // 100 + (1 << 16)


def _bar(name: str, done: int, total: int, shown: int) -> int:
    """A one-line progress bar on stderr; redrawn only when the percentage changes."""
    pct = min(100, done * 100 // total)
    if pct != shown:
        bar = ("#" * (pct * 30 // 100)).ljust(30)
        print(f"\r{name}.gz [{bar}] {pct:3d}% of {_human(total)}", end="", file=sys.stderr, flush=True)
    return pct


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def data_info(
    data_dir: str | os.PathLike[str] | None = None, *, offline: bool | None = None
) -> dict[str, Any]:
    """Where each file is, its size, whether its checksum matches, and the label counts. Never downloads."""
    place = _place(data_dir)
    offline = _offline(offline)
    files: dict[str, dict[str, Any]] = {}
    for name, spec in FILES.items():
        path = _find(place.directory, name)
        entry: dict[str, Any] = {"path": str(path) if path else None, "present": path is not None}
        if path is not None:
            entry["bytes_on_disk"] = path.stat().st_size
            try:
                array, sha, size = read_idx_hashed(path)
                entry.update(
                    decompressed_bytes=size,
                    sha256=sha,
                    checksum_ok=sha == spec.sha256,
                    shape=list(array.shape),
                )
                if "labels" in name and array.dtype == np.uint8:
                    entry["label_counts"] = np.bincount(array, minlength=10).tolist()
            except IdxError as e:
                entry.update(checksum_ok=False, error=str(e))
        files[name] = entry
    ok = all(f.get("checksum_ok") for f in files.values())
    return {
        "directory": str(place.directory),
        "from": place.origin,
        "cache_dir": str(cache_dir()),
        "offline": offline,
        "complete": all(f["present"] for f in files.values()),
        "verified": ok,
        "would_download": place.is_cache and not offline and not ok,
        "files": files,
    }
