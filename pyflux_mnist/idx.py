"""A strict reader and writer for LeCun's IDX format (the container of the MNIST files).

Strict because the files users feed us are often not what they seem: an HTML error page saved as
``.gz``, a download cut short, a header that lies. Each of these raises :class:`IdxError` with one line
naming the file. The payload is read in chunks up to the declared size plus one byte, so a header that
claims 2^32 images cannot make us allocate more than the file really holds.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write
from .errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
MAX_NDIM = 16  # the format allows 255; nothing real has more than a handful
_CHUNK = 1 << 20

# IDX type byte -> big-endian dtype as stored in the file.
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _TYPES.items()}


class IdxError(DataError):
    """A file that is not a well-formed IDX file (or not a well-formed gzip of one)."""


def read_idx(source: bytes | str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or raw, told apart by the gzip magic) into a native-endian array."""
    return read_idx_hashed(source)[0]


def read_idx_hashed(source: bytes | str | os.PathLike[str]) -> tuple[np.ndarray, str, int]:
    """Like :func:`read_idx`, also returning the SHA-256 and size of the decompressed bytes.

    Hashing in the same pass is what lets callers verify a file against a known checksum whether it is
    stored raw, as the mirrors' ``.gz`` or as our re-compressed ``.gz``.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    try:
        raw: BinaryIO = (
            io.BytesIO(bytes(source))
            if isinstance(source, (bytes, bytearray, memoryview))
            else open(source, "rb")  # noqa: SIM115 - closed below
        )
    except OSError as e:
        raise IdxError(f"{name}: cannot open ({e.strerror or e})") from e
    with raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        f: BinaryIO = _gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
        try:
            return _parse(f, name)
        except (OSError, EOFError, zlib.error) as e:
            # BadGzipFile is an OSError; EOFError is a gzip stream cut short.
            raise IdxError(f"{name}: not a valid gzip file, truncated or corrupt ({e})") from e


def _parse(f: BinaryIO, name: str) -> tuple[np.ndarray, str, int]:
    sha = hashlib.sha256()
    head = _read_exact(f, 4)
    if len(head) < 4:
        raise IdxError(f"{name}: too short for an IDX header ({len(head)} bytes)")
    if head[:2] != b"\0\0":
        hint = " (looks like HTML, e.g. an error page)" if head[:1] in (b"<", b"\n", b" ") else ""
        raise IdxError(f"{name}: not an IDX file, bad magic {head.hex()}{hint}")
    type_code, ndim = head[2], head[3]
    if type_code not in _TYPES:
        raise IdxError(f"{name}: unknown IDX data type 0x{type_code:02x}")
    if not 1 <= ndim <= MAX_NDIM:
        raise IdxError(f"{name}: IDX header declares {ndim} dimensions (expected 1..{MAX_NDIM})")
    dims_raw = _read_exact(f, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise IdxError(f"{name}: header cut short (needs {4 * ndim} bytes of dimensions)")
    shape = struct.unpack(f">{ndim}I", dims_raw)
    if 0 in shape:
        raise IdxError(f"{name}: IDX header declares a zero-length dimension {shape}")
    dtype = _TYPES[type_code]
    expected = dtype.itemsize * int(np.prod(shape, dtype=object))
    sha.update(head)
    sha.update(dims_raw)
    payload = _read_at_most(f, expected + 1, sha)
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "has trailing bytes"
        got = f"{len(payload)}" if len(payload) < expected else "more"
        raise IdxError(f"{name}: {what}: header {shape} needs {expected} data bytes, found {got}")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array, sha.hexdigest(), len(head) + len(dims_raw) + expected


def _read_exact(f: BinaryIO, n: int) -> bytearray:
    return _read_at_most(f, n, None)


def _read_at_most(f: BinaryIO, n: int, sha: hashlib._Hash | None) -> bytearray:
    """Read up to ``n`` bytes in chunks, so memory grows with the real data, not the declared size.

    Stopping short means ``f`` reported its end, which is also when gzip checks its CRC trailer.
    """
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
        if sha is not None:
            sha.update(chunk)
    return buf


def write_idx(path: str | os.PathLike[str], array: np.ndarray, gzip: bool = True) -> Path:
    """Write ``array`` as an IDX file (gzipped with a fixed mtime when ``gzip``), atomically.

    For tests and for users packaging their own MNIST-format data.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise IdxError(
            f"{path}: IDX cannot store dtype {array.dtype} (use one of {sorted(map(str, _CODES))})"
        )
    if not 1 <= array.ndim <= MAX_NDIM or 0 in array.shape or max(array.shape) >= 2**32:
        raise IdxError(f"{path}: IDX cannot store an array of shape {array.shape}")
    code = _CODES[native]
    data = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=_TYPES[code]).tobytes()
    )
    if gzip:
        data = _gzip.compress(data, compresslevel=6, mtime=0)
    path = Path(path)
    with atomic_write(path) as f:
        f.write(data)
    return path
