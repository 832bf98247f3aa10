"""Hostile model files and checkpoints: pickles that would run code, headers that lie about their size, a
zip bomb in the metadata. Each is refused with one line, runs nothing and allocates next to nothing."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pyflux_mnist.checkpoint import load_checkpoint
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import ModelFileError
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe

LOADERS = [load_model, load_checkpoint]


class Payload:
    """Unpickling this calls ``open(sentinel, "w")``: proof that code ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (str(self.sentinel), "w"))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_header(descr: str, shape: tuple, payload: bytes = b"") -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}".encode("latin1")
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _write_zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as z:
        for name, blob in entries.items():
            z.writestr(f"{name}.npy", blob)
    return path


@pytest.fixture
def entries(tmp_path: Path) -> dict[str, bytes]:
    """The entries of a sound model file, as bytes."""
    r = get_recipe("flux-tutorial").replace(model={"sizes": (784, 4, 10)})
    path = Model(r, init_params(r.model, r.init, np.random.default_rng(0))).save(tmp_path / "good.npz")
    with zipfile.ZipFile(path) as z:
        return {n.removesuffix(".npy"): z.read(n) for n in z.namelist()}


def _refused(path: Path, *texts: str, limit: int = 8 << 20) -> None:
    for load in LOADERS:
        tracemalloc.start()
        try:
            with pytest.raises(ModelFileError) as info:
                load(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert "\n" not in str(info.value)
        if load is load_model:
            for text in texts:
                assert text in str(info.value)
        assert peak < limit, f"{load.__name__} allocated {peak} bytes for {path.name}"


@pytest.mark.parametrize("where", ["W1", "meta"])
def test_pickle_bomb_entry_runs_nothing(entries, tmp_path: Path, where: str) -> None:
    sentinel = tmp_path / "pwned"
    entries[where] = _npy(np.array([Payload(sentinel)], dtype=object))
    path = _write_zip(tmp_path / "bomb.npz", entries)
    _refused(path)
    result = CliRunner().invoke(cli, ["evaluate", str(path)])
    assert (
        result.exit_code == 1 and result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    )
    assert not sentinel.exists()


def test_a_bare_pickle_runs_nothing(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(Payload(sentinel)))
    _refused(path, "is not a pyflux-mnist model file (a Python pickle, which is never loaded)")
    assert not sentinel.exists()


def test_lying_meta_header_allocates_nothing(entries, tmp_path: Path) -> None:
    """A 100-byte metadata entry that declares a 1 GiB string (NumPy would allocate it before reading)."""
    entries["meta"] = _npy_header("<U268435456", (), b"x" * 100)
    _refused(_write_zip(tmp_path / "m.npz", entries), "declares", "but holds 100 bytes")


def test_lying_weight_header_allocates_nothing(entries, tmp_path: Path) -> None:
    """Metadata describing a 784-65536-10 network (the widest within the parameter limit) and a 200 MB W1
    header on a few bytes of data. (784-65536-65536-10 is now refused by the recipe itself: see
    test_weight_bomb_is_refused_before_reading.)"""
    meta = json.loads(str(np.load(io.BytesIO(entries["meta"]))))
    meta["recipe"]["model"]["sizes"] = [784, 65536, 10]
    meta["recipe"]["model"]["activations"] = ["relu", "identity"]
    entries = {"meta": _npy(np.array(json.dumps(meta)))}
    for name, shape in [("W1", (65536, 784)), ("b1", (65536,)), ("W2", (10, 65536)), ("b2", (10,))]:
        entries[name] = _npy_header("<f4", shape, b"\0" * 64)
    _refused(_write_zip(tmp_path / "m.npz", entries), "declares float32 (65536, 784)")


@pytest.mark.parametrize(
    ("descr", "shape"), [("<f4", (2**31, 2**31)), ("<f4", (-1, 784)), ("|V2000000000", ())]
)
def test_absurd_declared_shapes(entries, tmp_path: Path, descr: str, shape: tuple) -> None:
    entries["W1"] = _npy_header(descr, shape, b"\0" * 16)
    _refused(_write_zip(tmp_path / "m.npz", entries))


def test_zip_bomb_metadata_is_not_inflated(entries, tmp_path: Path) -> None:
    """16 MiB of metadata deflated to ~16 kB: refused from its declared size, never decompressed."""
    big = json.dumps({"format": "pyflux-mnist-model", "pad": " " * (16 << 20)})
    entries["meta"] = _npy(np.array(big))
    path = _write_zip(tmp_path / "bomb.npz", entries, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    _refused(path, "implausibly large", limit=4 << 20)


def test_oversized_npy_header_is_refused(entries, tmp_path: Path) -> None:
    """NumPy refuses .npy headers over 10000 bytes unless told otherwise; so do we."""
    entries["W1"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", 65535) + b"{" + b" " * 65533 + b"\n"
    _refused(_write_zip(tmp_path / "m.npz", entries))
