"""Property-based fuzzing of everything that reads untrusted bytes: IDX files, model files and checkpoints,
and user images. Only our own one-line exceptions may escape: never another exception, a crash, a hang, or
a large allocation because a header lied (measured with tracemalloc: NumPy reports its buffers to it).

The default run tries a few hundred cases; ``pytest -m fuzz tests/test_fuzz.py`` tries ``FUZZ_EXAMPLES``
(10000) per target. (tests/test_idx.py also fuzzes the IDX reader with random bytes.)
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyflux_mnist.checkpoint import load_checkpoint
from pyflux_mnist.errors import ImageError, ModelFileError
from pyflux_mnist.idx import IdxError, read_idx
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe

QUICK_EXAMPLES = 150
FUZZ_EXAMPLES = 10_000
#: More than any honest small input needs; far less than a lying header would ask for.
MEMORY_LIMIT = 64 << 20

quick = settings(max_examples=QUICK_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
long = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def _bounded_memory():
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
        assert peak < MEMORY_LIMIT, f"allocated {peak} bytes"
    finally:
        tracemalloc.stop()


# --- IDX: mutations of a valid file --------------------------------------------------------------------


def _idx(dims: tuple[int, ...] = (3, 28, 28)) -> bytes:
    rng = np.random.default_rng(0)
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + rng.integers(0, 256, int(np.prod(dims)), dtype=np.uint8).tobytes()


IDX = _idx()

_edits = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), max_size=6)  # mostly the header
_u32 = st.sampled_from([0, 1, 3, 28, 255, 2**16, 2**31 - 1, 2**32 - 1])
idx_cases = st.tuples(
    _edits,
    st.lists(_u32, max_size=4),  # dimensions written over the real ones
    st.integers(0, len(IDX) + 8),  # truncation
    st.binary(max_size=16),  # trailing bytes
    st.sampled_from(["raw", "gzip", "gzip-cut"]),
)


def _mutate_idx(case) -> bytes:
    edits, dims, cut, tail, container = case
    b = bytearray(IDX)
    for i, d in enumerate(dims):
        b[4 + 4 * i : 8 + 4 * i] = struct.pack(">I", d)
    for pos, value in edits:
        b[pos] = value
    blob = bytes(b[:cut]) + tail
    if container != "raw":
        blob = gzip.compress(blob)
        if container == "gzip-cut":
            blob = blob[: max(0, len(blob) - 1 - cut % 20)]
    return blob


def _check_idx(case) -> None:
    with _bounded_memory():
        try:
            a = read_idx(_mutate_idx(case))
        except IdxError as e:
            assert "\n" not in str(e)
        else:
            assert isinstance(a, np.ndarray) and a.size > 0


@quick
@given(idx_cases)
def test_idx_mutations(case) -> None:
    _check_idx(case)


@pytest.mark.fuzz
@long
@given(idx_cases)
def test_fuzz_idx_mutations(case) -> None:
    _check_idx(case)


# --- model files and checkpoints -----------------------------------------------------------------------


def _model_bytes() -> bytes:
    r = get_recipe("flux-tutorial").replace(model={"sizes": (784, 4, 10)})
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as d:
        path = Model(r, init_params(r.model, r.init, np.random.default_rng(0))).save(Path(d) / "m.npz")
        buf.write(path.read_bytes())
    return buf.getvalue()


MODEL = _model_bytes()
#: Where the structure is: zip headers, .npy headers, the central directory.
HOT = sorted(
    {
        i + k
        for sig in (b"PK", b"\x93NUMPY")
        for i in range(len(MODEL))
        if MODEL.startswith(sig, i)
        for k in range(64)
    }
)
_positions = st.one_of(st.sampled_from([h for h in HOT if h < len(MODEL)]), st.integers(0, len(MODEL) - 1))
byte_cases = st.tuples(
    st.lists(st.tuples(_positions, st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(MODEL)),
)


def _npy_header(descr: str, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, shape)  # noqa: UP031
    header = header.encode("latin1")
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_meta = st.one_of(
    _json,
    st.fixed_dictionaries(
        {
            "format": st.sampled_from(["pyflux-mnist-model", "pyflux-mnist-checkpoint"]),
            "format_version": st.just(1),
        },
        optional={
            "recipe": st.one_of(
                _json,
                st.fixed_dictionaries(
                    {"name": st.text(max_size=5)},
                    optional={
                        "model": st.fixed_dictionaries(
                            {},
                            optional={
                                "sizes": st.lists(st.integers(-5, 2**40), max_size=5),
                                "activations": st.lists(
                                    st.sampled_from(["relu", "identity", "x"]), max_size=4
                                ),
                                "loss": st.sampled_from(["crossentropy", "squared_error", 3]),
                            },
                        ),
                        "optimizer": st.dictionaries(
                            st.sampled_from(["name", "lr", "beta1"]), _json, max_size=3
                        ),
                        "steps": _json,
                        "batch_size": _json,
                    },
                ),
            ),
            "steps_done": _json,
            "total_steps": _json,
            "seed": _json,
            "backend": _json,
            "data": _json,
        },
    ),
)
_descr = st.sampled_from(
    ["<f4", "<f8", "|u1", "<i8", "|b1", "<U5", "|S3", "|O", "<c8", ">f4", "<U2000000000"]
)
_shape = st.lists(st.sampled_from([0, 1, 4, 10, 784, 2**20, 2**31, -1]), max_size=3).map(tuple)
_entry = st.one_of(
    st.builds(_npy_header, _descr, _shape, st.binary(max_size=64)),
    st.binary(max_size=64),
    _meta.map(
        lambda m: _npy_header(f"<U{max(1, len(json.dumps(m)))}", (), json.dumps(m).encode("utf-32-le"))
    ),
)
_names = st.sampled_from(["meta", "W1", "b1", "W2", "b2", "W3", "losses", "opt.t", "opt.m.0", "x", "../evil"])
structured_cases = st.tuples(
    st.dictionaries(_names, _entry, max_size=7),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
)


def _zip(case) -> bytes:
    entries, method = case
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, blob in entries.items():
            z.writestr(f"{name}.npy", blob)
    return buf.getvalue()


def _mutate_model(case) -> bytes:
    edits, cut = case
    b = bytearray(MODEL)
    for pos, value in edits:
        b[pos] = value
    return bytes(b[:cut]) if cut < len(b) else bytes(b)


_scratch = Path(tempfile.mkdtemp(prefix="pyflux-fuzz-")) / "f.npz"


def _check_loaders(blob: bytes) -> None:
    _scratch.write_bytes(blob)
    for load in (load_model, load_checkpoint):
        with _bounded_memory():
            try:
                load(_scratch)
            except ModelFileError as e:
                assert "\n" not in str(e)


@quick
@given(byte_cases)
def test_model_file_byte_mutations(case) -> None:
    _check_loaders(_mutate_model(case))


@quick
@given(structured_cases)
def test_model_file_structured(case) -> None:
    _check_loaders(_zip(case))


@pytest.mark.fuzz
@long
@given(byte_cases)
def test_fuzz_model_file_byte_mutations(case) -> None:
    _check_loaders(_mutate_model(case))


@pytest.mark.fuzz
@long
@given(structured_cases)
def test_fuzz_model_file_structured(case) -> None:
    _check_loaders(_zip(case))


# --- user images (pyflux_mnist.photo) ------------------------------------------------------------------

try:
    from pyflux_mnist import photo
except ImportError:  # written on the images branch; these tests run once it is merged
    photo = None
needs_photo = pytest.mark.skipif(photo is None, reason="pyflux_mnist.photo is not here yet (branch images)")

_MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"RIFF\0\0\0\0WEBP",
    b"P5\n",
]
_dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64, np.bool_])
_array_shapes = st.one_of(
    st.tuples(st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 5)),
    st.tuples(st.integers(1, 3)),
    st.tuples(st.just(1), st.integers(1, 3000)),
)


def _array(dtype, shape, fill, seed):
    rng = np.random.default_rng(seed)
    a = (rng.random(shape) * 300 - 20).astype(dtype) if fill == "random" else np.full(shape, 0, dtype)
    if fill in ("nan", "inf") and a.dtype.kind == "f" and a.size:
        a.flat[seed % a.size] = np.nan if fill == "nan" else np.inf
    if fill == "stroke" and a.ndim >= 2 and min(a.shape[:2]) > 4:
        a[a.shape[0] // 4 : -a.shape[0] // 4, a.shape[1] // 2] = 200
    return a


def _encoded(fmt: str, mode: str, w: int, h: int, seed: int, cut: int, flips: list[tuple[int, int]]) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    if fmt == "JPEG" and mode in ("P", "1"):  # JPEG cannot store those
        mode = "L"
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    b = bytearray(buf.getvalue())
    for pos, value in flips:
        b[pos % len(b)] = value
    return bytes(b[: len(b) - cut % max(1, len(b))])


image_cases = st.one_of(
    st.builds(
        _array,
        _dtypes,
        _array_shapes,
        st.sampled_from(["random", "zero", "nan", "inf", "stroke"]),
        st.integers(0, 2**16),
    ),
    st.builds(lambda m, b: m + b, st.sampled_from(_MAGIC), st.binary(max_size=200)),
    st.builds(
        _encoded,
        st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF"]),
        st.sampled_from(["L", "RGB", "P", "1"]),
        st.integers(1, 48),
        st.integers(1, 48),
        st.integers(0, 2**16),
        st.integers(0, 4),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    ),
)


def _check_image(src) -> None:
    if isinstance(src, bytes):
        _scratch.with_suffix(".img").write_bytes(src)
        src = _scratch.with_suffix(".img")
    with _bounded_memory():
        try:
            digit = photo.preprocess(src)
        except ImageError as e:
            assert "\n" not in str(e)
        else:
            assert digit.shape == (28, 28) and digit.dtype == np.uint8


@needs_photo
@quick
@given(image_cases)
def test_image_preprocessing(src) -> None:
    _check_image(src)


@needs_photo
@pytest.mark.fuzz
@long
@given(image_cases)
def test_fuzz_image_preprocessing(src) -> None:
    _check_image(src)


@needs_photo
@pytest.mark.parametrize("high_byte", [5, 127])
def test_a_png_chunk_declaring_more_than_the_file_allocates_nothing_big(high_byte) -> None:
    """Found by the fuzzer: byte 33 is the high byte of the IDAT chunk's length, so this 82-byte PNG
    declares an IDAT of 83 MB (or 2.1 GB), and Pillow skips the chunk by reading that many bytes."""
    _check_image(_encoded("PNG", "RGB", 1, 4, 0, 0, [(33, high_byte)]))
