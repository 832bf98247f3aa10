"""The safe ``.npz`` container that model files and checkpoints share.

A plain ``.npz`` with no pickles (``allow_pickle=False``): arrays plus ``meta``, one JSON string tagged with
a format name and version. Writes are atomic; reads check every entry's declared size, dtype and shape
before NumPy allocates it, and turn every way a file can be missing, damaged or hostile into one
:class:`~pyflux_mnist.errors.ModelFileError` line.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import ModelFileError, first_line
from .spec import MAX_LAYERS, MAX_PARAMETERS
from .userpaths import UserPathError, escape, open_regular, os_error_line
from .version import __version__

#: Refuse metadata or arrays whose declared size is absurd before reading them.
MAX_META_BYTES = 1 << 20
MAX_ARRAY_BYTES = 1 << 30
#: Refuse a file whose entries together declare more than this (zip directory sizes, checked before any
#: entry is read): each entry alone may be within MAX_ARRAY_BYTES while many of them exhaust memory. A
#: checkpoint of the largest network (MAX_PARAMETERS weights, Adam's two slots) plus 10 million losses fits.
MAX_TOTAL_BYTES = 3 * 4 * MAX_PARAMETERS + 8 * 10_000_000 + (16 << 20)
#: The most entries any pyflux-mnist file holds: a checkpoint of the deepest network (W and b per layer,
#: each with up to two optimiser slots) plus meta, opt.t and losses. Counted before anything else is read.
MAX_ENTRIES = 6 * MAX_LAYERS + 3
#: The zip's end-of-central-directory record: its signature, and how far from the end it may start.
_EOCD = b"PK\x05\x06"
_EOCD_SEARCH = 22 + 0xFFFF
#: What a damaged or hostile .npz can make zipfile, zlib, lzma and NumPy raise while reading it (found by
#: fuzzing: an "encrypted" flag bit gives RuntimeError, an unknown compression method NotImplementedError).
READ_ERRORS = (
    OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
    NotImplementedError, RuntimeError,
)  # fmt: skip


def write_npz(
    path: str | os.PathLike[str],
    fmt: str,
    version: int,
    what: str,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> Path:
    """Write ``arrays`` and a JSON ``meta`` entry (tagged with ``fmt``, ``version`` and the package version)
    atomically: the previous file stays intact if anything fails."""
    path = Path(path)
    meta = {"format": fmt, "format_version": version, "package_version": __version__, **meta}
    try:
        text = json.dumps(meta, sort_keys=True, allow_nan=False)  # never write what a load refuses
    except ValueError:
        raise ModelFileError(
            escape(f"cannot save the {what} to {path}: its metadata holds NaN or Inf")
        ) from None
    try:
        with atomic_write(path) as f:
            entries: dict[str, Any] = {"meta": np.array(text), **arrays}
            np.savez(f, **entries)
    except OSError as e:
        raise ModelFileError(os_error_line(e, path, f"cannot save the {what} to")) from None
    return path


@contextlib.contextmanager
def open_npz(path: Path, what: str, meta: bool = True) -> Iterator[Any]:
    """``np.load(path, allow_pickle=False)``, with every way the file can be missing, unreadable or not
    ours turned into one :class:`ModelFileError` line (``what``: "model file", "checkpoint"; ``meta``:
    whether the file must have a metadata entry)."""
    try:
        with open_regular(path, what) as f:
            head = f.read(8)
            if head[:4] != b"PK\x03\x04":  # not a zip: never let np.load read a bare .npy or pickle
                raise not_npz(head, path, what)
            count_entries(f, path)
            f.seek(0)
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ModelFileError(escape(f"{path} is not a pyflux-mnist {what} (not a .npz archive)"))
            with loaded as npz:
                check_entries(npz, path)
                if meta and "meta" not in npz.files:
                    raise ModelFileError(escape(f"{path} is not a pyflux-mnist {what}: no metadata entry"))
                yield npz
    except ModelFileError:
        raise
    except UserPathError as e:
        raise ModelFileError(str(e)) from None
    except FileNotFoundError:
        raise ModelFileError(escape(f"no {what} at {path}")) from None
    except IsADirectoryError:
        raise ModelFileError(escape(f"{path} is a directory, not a {what}")) from None
    except READ_ERRORS as e:
        raise ModelFileError(escape(f"{path} is not a readable {what}: {first_line(e)}")) from None


def count_entries(f: Any, path: Path) -> None:
    """Refuse a zip whose end record declares more than :data:`MAX_ENTRIES` entries, before its directory is
    parsed (40,000 empty entries used to take 26 s to check). A file without the record is left to the zip
    reader, which refuses it."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - _EOCD_SEARCH))
    tail = f.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) < at + 12:
        return
    (count,) = struct.unpack("<H", tail[at + 10 : at + 12])
    if count > MAX_ENTRIES:  # 0xFFFF (a ZIP64 count) included: no file of ours needs one
        raise ModelFileError(
            escape(f"{path}: its zip directory lists {count:,} entries; a pyflux-mnist file has at most "
                   f"{MAX_ENTRIES}")
        )  # fmt: skip


def check_entries(npz: Any, path: Path) -> None:
    """Before any entry is read: at most :data:`MAX_ENTRIES`, each named ``NAME.npy`` (NumPy would also
    answer to a bare ``NAME`` entry, and prefer it), no name twice (the last would silently win), and a
    bounded total size.

    The sizes are the zip directory's declared uncompressed sizes; each entry's own ``.npy`` header is
    checked against them later (:func:`member_header`), and zipfile stops reading at the declared size.
    """
    infos = npz.zip.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ModelFileError(
            escape(f"{path}: {len(infos):,} entries; a pyflux-mnist file has at most {MAX_ENTRIES}")
        )
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if not name.endswith(".npy"):
            raise ModelFileError(escape(f"{path}: entry {name!r} is not a .npy array; refusing to guess"))
        if name in seen:
            raise ModelFileError(escape(f"{path}: entry {name} appears more than once; refusing to guess"))
        seen.add(name)
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise ModelFileError(
            escape(
                f"{path}: its entries declare {total:,} bytes in all, more than any pyflux-mnist file holds"
            )
        )


def read_member(npz: Any, name: str) -> np.ndarray:
    """Entry ``NAME.npy``, read by that exact name only (never NumPy's lookup, which tries ``NAME`` first),
    without pickles. Call :func:`member_header` first: it bounds what this allocates."""
    with npz.zip.open(f"{name}.npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


#: The first bytes of files people pass by mistake, and what to call them.
_MAGIC = {
    b"\x93NUMPY": "a NumPy .npy array",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF",
    b"\x1f\x8b": "a gzip file",
    b"\x80": "a Python pickle, which is never loaded",
}


def not_npz(head: bytes, path: Path, what: str) -> ModelFileError:
    """The error for a file that is not a zip archive (as every .npz is), naming what it looks like. Never
    NumPy's own answer for such a file, which suggests loading it with pickles enabled."""
    kind = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if kind is None:
        text = head.isascii() and all(c >= 32 or c in b"\t\n\r" for c in head)
        kind = "an empty file" if not head else "a text file" if text else "not a .npz (zip) archive"
    writer = {"model file": "train --save", "checkpoint": "train --checkpoint"}.get(what, "train")
    return ModelFileError(
        escape(
            f"{path} is not a pyflux-mnist {what} ({kind}); a {what} is the .npz that "
            f"`pyflux-mnist {writer}` writes"
        )
    )


def read_json_meta(npz: Any, path: Path) -> Any:
    """The ``meta`` entry: one JSON string, parsed (its size checked before it is read)."""
    shape, dtype = member_header(npz, "meta", path, MAX_META_BYTES)
    if dtype.kind != "U" or shape != ():
        raise ModelFileError(f"{path}: metadata must be one JSON string, got {dtype} {shape}")
    try:
        return json.loads(
            str(read_member(npz, "meta")), parse_constant=_no_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: metadata is not valid JSON ({e.msg})") from None
    except _NonFinite as e:
        raise ModelFileError(f"{path}: metadata holds {e}, not a finite number") from None


class _NonFinite(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in JSON (Python's json accepts them; no JSON reader must)."""


def _no_constant(token: str) -> Any:
    raise _NonFinite(token)


def _finite_float(token: str) -> float:
    """A JSON number such as ``1e999`` parses to infinity: refused like ``Infinity`` itself."""
    value = float(token)
    if not math.isfinite(value):
        raise _NonFinite(token[:40])
    return value


#: The type each known metadata field must have (it is printed and compared; a dict as a backend name
#: would otherwise be printed as one).
META_TYPES: dict[str, tuple[type, ...]] = {
    "backend": (str,),
    "package_version": (str,),
    "format": (str,),
    "seed": (int,),
    "steps": (int,),
    "every": (int,),
    "steps_done": (int,),
    "total_steps": (int,),
    "data": (str,),
    "final_loss": (float, int),
    "train_accuracy": (float, int),
    "test_accuracy": (float, int),
}


#: The range of each numeric metadata field that has one (inclusive).
META_RANGES: dict[str, tuple[float, float]] = {
    "steps": (0, math.inf),
    "every": (1, math.inf),
    "steps_done": (0, math.inf),
    "total_steps": (0, math.inf),
    "final_loss": (0.0, math.inf),
    "train_accuracy": (0.0, 1.0),
    "test_accuracy": (0.0, 1.0),
}


def check_meta_types(meta: dict[str, Any], path: Path) -> None:
    """Every known metadata field has its type (booleans are not numbers) and range (numbers finite: a
    NaN accuracy would make every later JSON answer about the model fail); strings are short and
    printable."""
    for key, types in META_TYPES.items():
        value = meta.get(key)
        if value is None:  # absent: the reader that needs it says so
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            kind = {str: "a string", int: "an integer"}.get(types[0], "a number")
            raise ModelFileError(escape(f"{path}: metadata {key!r} must be {kind}, got {value!r:.60}"))
        low, high = META_RANGES.get(key, (-math.inf, math.inf))
        if isinstance(value, float | int) and not (low <= value <= high and math.isfinite(value)):
            span = f"{low:g}..{high:g}" if math.isfinite(high) else f"a finite number >= {low:g}"
            raise ModelFileError(escape(f"{path}: metadata {key!r} must be {span}, got {value!r:.60}"))
        if isinstance(value, str) and (len(value) > 200 or not value.isprintable()):
            raise ModelFileError(
                escape(f"{path}: metadata {key!r} is not a short printable string: {value[:60]!r}")
            )


def read_meta(
    npz: Any, path: Path, fmt: str, version: int, what: str, hints: dict[str, str] | None = None
) -> dict[str, Any]:
    """The metadata of a file of format ``fmt``; ``hints`` maps another format tag to advice."""
    meta = read_json_meta(npz, path)
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != fmt:
        hint = (hints or {}).get(found, "") if isinstance(found, str) else ""
        raise ModelFileError(f"{path} is not a pyflux-mnist {what}{hint}")
    check_meta_types(meta, path)
    if meta.get("format_version") != version:
        raise ModelFileError(
            f"{path}: {what} format version {meta.get('format_version')!r} is not supported "
            f"(this is pyflux-mnist {__version__}, format {version})"
        )
    return meta


def member_header(npz: Any, name: str, path: Path, limit: int) -> tuple[tuple[int, ...], np.dtype]:
    """The declared shape and dtype of entry ``name``, checked before NumPy allocates anything.

    NumPy allocates the whole declared array before reading a zip member, so a 100-byte entry whose header
    claims a gigabyte would cost a gigabyte. Refuse a declared size above ``limit`` or larger than the
    bytes the entry actually holds. (Callers then insist on one exact dtype, so object arrays, which would
    need unpickling, never get further.)
    """
    info = npz.zip.getinfo(f"{name}.npy")
    if info.file_size > limit + 4096:
        raise ModelFileError(f"{path}: entry {name} is implausibly large ({info.file_size} bytes)")
    with npz.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ModelFileError(f"{path}: entry {name} has an unknown .npy version {version}")
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        try:
            shape, _fortran, dtype = read(f)
        except ValueError:  # NumPy's message spans lines; ours is one
            raise ModelFileError(f"{path}: entry {name} has a malformed or oversized .npy header") from None
        header_bytes = f.tell()
    if any(n < 0 for n in shape):
        raise ModelFileError(f"{path}: entry {name} declares a negative size {shape}")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > limit or declared > info.file_size - header_bytes:
        raise ModelFileError(
            f"{path}: entry {name} declares {dtype} {shape} ({declared} bytes) but holds "
            f"{max(0, info.file_size - header_bytes)} bytes"
        )
    return shape, dtype


def read_array(npz: Any, name: str, dtype: type, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """Entry ``name``, which must be exactly ``dtype`` and ``shape`` (and finite, if floating point)."""
    declared_shape, declared_dtype = member_header(npz, name, path, MAX_ARRAY_BYTES)
    if declared_dtype != dtype or declared_shape != shape:
        raise ModelFileError(
            f"{path}: {name} should be {np.dtype(dtype)} {shape}, found {declared_dtype} {declared_shape}"
        )
    a = read_member(npz, name)
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelFileError(f"{path}: {name} contains NaN or Inf")
    return a
