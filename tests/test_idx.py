"""The IDX reader accepts well-formed files (raw or gzipped) and rejects every bad kind with IdxError."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyflux_mnist.errors import DataError
from pyflux_mnist.idx import IdxError, read_idx, read_idx_hashed, write_idx


def _header(type_code: int, *dims: int) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip(tmp_path: Path, compress: bool, dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "x.idx", array, gzip=compress)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if compress else b"\0\0")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    # Bytes and str paths work too, and gzip is told by content, not by name.
    np.testing.assert_array_equal(read_idx(path.read_bytes()), array)
    np.testing.assert_array_equal(read_idx(str(path)), array)


def test_hash_is_of_decompressed_bytes(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _, sha_gz, size_gz = read_idx_hashed(write_idx(tmp_path / "a.gz", array, gzip=True))
    _, sha_raw, size_raw = read_idx_hashed(write_idx(tmp_path / "a", array, gzip=False))
    assert (sha_gz, size_gz) == (sha_raw, size_raw)
    assert size_raw == 4 + 12 + 24


def test_real_labels_header(mnist_dir: Path) -> None:
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def _raises(source: bytes | Path, *fragments: str) -> str:
    with pytest.raises(IdxError) as info:
        read_idx(source)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_idx_error_is_a_data_error() -> None:
    assert issubclass(IdxError, DataError)


def test_truncated_gz(tmp_path: Path, mnist_dir: Path) -> None:
    data = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    bad = tmp_path / "cut.gz"
    bad.write_bytes(data[: len(data) // 2])
    _raises(bad, str(bad), "gzip")
    bad.write_bytes(data[:-4])  # only the length trailer missing
    _raises(bad, "gzip")


def test_corrupt_gz_crc(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(_header(8, 4) + b"abcd", mtime=0))
    data[-8] ^= 0xFF  # flip a byte of the CRC
    _raises(bytes(data), "gzip")


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\0" * 8)
    _raises(path, str(path), "magic")


def test_unknown_type() -> None:
    _raises(_header(0x07, 2) + b"ab", "type 0x07")


def test_html_saved_as_gz(tmp_path: Path) -> None:
    page = b"<html><body><h1>503 Service Unavailable</h1></body></html>\n"
    for name, content in [("page.gz", page), ("page2.gz", gzip.compress(page))]:
        path = tmp_path / name
        path.write_bytes(content)
        _raises(path, str(path), "HTML")


@pytest.mark.parametrize(
    "header",
    [
        _header(8, 2**32 - 1, 28, 28),  # 2^32 images
        _header(8, 2**32 - 1, 2**32 - 1, 2**32 - 1),
        _header(0x0E, 2**32 - 1),
    ],
)
def test_lying_header_does_not_allocate(header: bytes) -> None:
    for source in (header + b"\0" * 100, gzip.compress(header + b"\0" * 100)):
        _raises(source, "truncated", "found 100")


def test_zero_and_absurd_dims() -> None:
    _raises(_header(8), "0 dimensions")
    _raises(bytes([0, 0, 8, 200]) + b"\0" * 800, "200 dimensions")
    _raises(_header(8, 0, 28), "zero-length")


def test_short_header() -> None:
    _raises(b"", "too short")
    _raises(b"\0\0\x08", "too short")
    _raises(b"\0\0\x08\x03\0\0\0\x01", "header cut short")


def test_truncated_and_trailing_payload() -> None:
    _raises(_header(8, 10) + b"x" * 9, "truncated", "found 9")
    _raises(_header(8, 10) + b"x" * 11, "trailing")
    _raises(gzip.compress(_header(8, 10) + b"x" * 11), "trailing")


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope", "nope", "cannot open")


def test_write_rejects_unstorable(tmp_path: Path) -> None:
    with pytest.raises(IdxError):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint64))
    with pytest.raises(IdxError):
        write_idx(tmp_path / "x", np.zeros((0, 3), dtype=np.uint8))
    assert not (tmp_path / "x").exists()


def _check_only_idx_errors(data: bytes) -> None:
    try:
        array = read_idx(data)
    except IdxError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(array, np.ndarray) and array.size > 0


_near_idx = st.builds(
    lambda t, n, dims, payload: bytes([0, 0, t, n]) + dims + payload,
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    st.integers(0, 4),
    st.binary(max_size=16),
    st.binary(max_size=64),
)
_any_bytes = st.one_of(st.binary(max_size=200), _near_idx)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_bytes, st.booleans())
def test_random_bytes_only_raise_idx_error(data: bytes, compress: bool) -> None:
    _check_only_idx_errors(gzip.compress(data) if compress else data)


@pytest.mark.fuzz
@settings(max_examples=20000, deadline=None)
@given(_any_bytes, st.booleans(), st.integers(0, 100))
def test_fuzz_random_bytes(data: bytes, compress: bool, cut: int) -> None:
    """Long run (-m fuzz): also random cuts of a gzip stream."""
    blob = gzip.compress(data) if compress else data
    _check_only_idx_errors(blob[: max(0, len(blob) - cut)] if compress else blob)
