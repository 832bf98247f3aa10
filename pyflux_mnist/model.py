"""A trained network: its recipe, its float32 weights, and one safe file format for every backend.

The file is a plain ``.npz`` (no pickles: loaded with ``allow_pickle=False``): ``W1, b1, W2, b2, ...`` as
float32 in Flux's and PyTorch's ``(out, in)`` orientation, plus ``meta``, a JSON string with the recipe,
backend, accuracies and package version. Saves are atomic; loads validate every name, shape and dtype
before any array is used.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .atomic import atomic_write
from .backends import numpy_backend
from .errors import ModelFileError, PyfluxError
from .prepare import scale_images, scale_unit_images
from .recipes import recipe_label
from .spec import MAX_PARAMETERS, Recipe
from .userpaths import UserPathError, escape, open_regular

FORMAT = "pyflux-mnist-model"
FORMAT_VERSION = 1
#: Refuse metadata or arrays whose declared size is absurd before reading them.
MAX_META_BYTES = 1 << 20
MAX_ARRAY_BYTES = 1 << 30
#: Float images may stray this far outside [0, 1] (rounding in whoever computed them).
UNIT_SLACK = 1e-6
#: Refuse a file whose entries together declare more than this (zip directory sizes, checked before any
#: entry is read): each entry alone may be within MAX_ARRAY_BYTES while many of them exhaust memory. A
#: checkpoint of the largest network (MAX_PARAMETERS weights, Adam's two slots) plus 10 million losses fits.
MAX_TOTAL_BYTES = 3 * 4 * MAX_PARAMETERS + 8 * 10_000_000 + (16 << 20)
#: What a damaged or hostile .npz can make zipfile, zlib, lzma and NumPy raise while reading it (found by
#: fuzzing: an "encrypted" flag bit gives RuntimeError, an unknown compression method NotImplementedError).
READ_ERRORS = (
    OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
    NotImplementedError, RuntimeError,
)  # fmt: skip


@dataclass
class Model:
    """A network that can predict MNIST digits with NumPy, whichever backend trained it."""

    recipe: Recipe
    params: list[np.ndarray]  # [W1, b1, W2, b2, ...] float32, W (out, in)
    meta: dict[str, Any] = field(default_factory=dict)  # backend, accuracies, seed, ...

    def __post_init__(self) -> None:
        self.params = [np.ascontiguousarray(p, dtype=np.float32) for p in self.params]
        expected = [s for pair in self.recipe.model.shapes for s in pair]
        got = [p.shape for p in self.params]
        if got != expected:
            raise ModelFileError(f"parameter shapes {got} do not match the recipe's {expected}")

    def __repr__(self) -> str:  # one line: the weights are in .params
        acc = self.meta.get("test_accuracy")
        return (
            f"Model({recipe_label(self.recipe)}, sizes {'-'.join(map(str, self.spec.sizes))}, "
            f"backend {self.meta.get('backend', '?')}"
            + (f", test accuracy {acc:.4f})" if isinstance(acc, float) else ")")
        )

    @property
    def spec(self):
        return self.recipe.model

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """Images → ``(784, N)`` float32 in the recipe's scale.

        ``images``: ``(N, 28, 28)``, ``(N, 784)`` or one ``(28, 28)``; either uint8 (any integer type) 0..255
        as MNIST stores them, or floats in [0, 1]. Anything else is refused: floats 0..255 would otherwise
        be read as a picture 255 times too bright and give confident nonsense.
        """
        images = np.asarray(images)
        if images.ndim == 2 and images.shape == (28, 28):
            images = images[None]
        if images.ndim not in (2, 3) or images.size == 0 or images[0].size != 784:
            raise PyfluxError(f"expected images of 28x28 = 784 pixels, got an array of shape {images.shape}")
        scale = self.recipe.data.scale
        if images.dtype.kind in "ui":
            low, high = int(images.min()), int(images.max())
            if low < 0 or high > 255:
                raise PyfluxError(f"integer images must hold 0..255, these range from {low} to {high}")
            return scale_images(images, scale)
        if images.dtype.kind == "f":
            lo, hi = float(np.min(images)), float(np.max(images))
            if not (lo >= -UNIT_SLACK and hi <= 1 + UNIT_SLACK):  # NaN fails too
                hint = "; divide by 255" if lo >= 0 and hi <= 255 else ""
                raise PyfluxError(
                    f"float images must hold values in [0, 1] (or pass uint8 0..255), these range from "
                    f"{lo:g} to {hi:g}{hint}"
                )
            return scale_unit_images(images, scale)
        raise PyfluxError(f"images must be uint8 0..255 or floats in [0, 1], got dtype {images.dtype}")

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``(N, 10)`` class probabilities (squared-error networks: their output activations).

        ``images``: uint8 0..255 or floats in [0, 1], ``(N, 28, 28)``, ``(N, 784)`` or one ``(28, 28)``.
        Finite but huge weights (a damaged or hostile file) overflow float32 to Inf and NaN: refused here,
        so no NaN reaches a prediction or a JSON output.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            probs = numpy_backend.probabilities(self.spec, self.params, self.inputs(images)).T
        if not np.all(np.isfinite(probs)):
            raise ModelFileError(
                "the model's outputs are not finite numbers (its weights overflow float32); "
                "the model file is damaged or was not trained by pyflux-mnist"
            )
        return probs

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``(N,)`` predicted labels 0..9 (the first maximum, as ``Flux.onecold``); ``images`` as for
        :meth:`probabilities`."""
        return np.argmax(self.probabilities(images), axis=1).astype(np.uint8)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(images) == np.asarray(labels)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically: the previous file stays intact if anything fails."""
        arrays = {entry_name(i): p for i, p in enumerate(self.params)}
        meta = {"recipe": self.recipe.to_dict(), **self.meta}
        return write_npz(path, FORMAT, FORMAT_VERSION, "model", meta, arrays)

    def predict_images(self, paths: Any, top: int = 3) -> list[dict[str, Any]]:
        """Predict image files (any photo or drawing of a digit; see :mod:`pyflux_mnist.photo`)."""
        from .photo import predict_files

        return predict_files(self, paths, top=top)


def entry_name(i: int) -> str:
    """Entry names: W1, b1, W2, b2, ..."""
    return f"{'Wb'[i % 2]}{i // 2 + 1}"


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
        with atomic_write(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    except OSError as e:
        raise ModelFileError(f"cannot save the {what} to {path}: {e.strerror or e}") from None
    return path


@contextlib.contextmanager
def open_npz(path: Path, what: str) -> Iterator[Any]:
    """``np.load(path, allow_pickle=False)``, with every way the file can be missing, unreadable or not
    ours turned into one :class:`ModelFileError` line (``what``: "model file", "checkpoint")."""
    try:
        with open_regular(path, what) as f:
            head = f.read(8)
            if head[:4] != b"PK\x03\x04":  # not a zip: never let np.load read a bare .npy or pickle
                raise not_npz(head, path, what)
            f.seek(0)
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ModelFileError(escape(f"{path} is not a pyflux-mnist {what} (not a .npz archive)"))
            with loaded as npz:
                check_entries(npz, path)
                if "meta" not in npz.files:
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


def check_entries(npz: Any, path: Path) -> None:
    """Before any entry is read: no name twice (the last would silently win) and a bounded total size.

    The sizes are the zip directory's declared uncompressed sizes; each entry's own ``.npy`` header is
    checked against them later (:func:`member_header`), and zipfile stops reading at the declared size.
    """
    infos = npz.zip.infolist()
    names = [i.filename for i in infos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelFileError(escape(f"{path}: entry {dupes[0]} appears more than once; refusing to guess"))
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise ModelFileError(
            escape(
                f"{path}: its entries declare {total:,} bytes in all, more than any pyflux-mnist file holds"
            )
        )


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
        return json.loads(str(npz["meta"]))
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: metadata is not valid JSON ({e.msg})") from None


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read and validate a model file; any problem is one :class:`ModelFileError` line."""
    path = Path(path)
    with open_npz(path, "model file") as npz:
        meta = read_meta(npz, path, FORMAT, FORMAT_VERSION, "model file")
        recipe = recipe_from_meta(meta, path)
        expected = [s for pair in recipe.model.shapes for s in pair]
        wanted = {entry_name(i) for i in range(len(expected))} | {"meta"}
        if set(npz.files) != wanted:
            raise ModelFileError(f"{path}: expected entries {sorted(wanted)}, found {sorted(npz.files)}")
        params = [read_array(npz, entry_name(i), np.float32, s, path) for i, s in enumerate(expected)]
    meta = {k: v for k, v in meta.items() if k != "recipe"}
    return Model(recipe, params, meta)


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


def check_meta_types(meta: dict[str, Any], path: Path) -> None:
    """Every known metadata field has its type (booleans are not numbers); strings are short and printable."""
    for key, types in META_TYPES.items():
        value = meta.get(key)
        if value is None:  # absent: the reader that needs it says so
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            kind = {str: "a string", int: "an integer"}.get(types[0], "a number")
            raise ModelFileError(escape(f"{path}: metadata {key!r} must be {kind}, got {value!r:.60}"))
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
    if isinstance(found, str) and found == fmt:
        check_meta_types(meta, path)
    if found != fmt:
        raise ModelFileError(f"{path} is not a pyflux-mnist {what}{(hints or {}).get(found, '')}")
    if meta.get("format_version") != version:
        raise ModelFileError(
            f"{path}: {what} format version {meta.get('format_version')!r} is not supported "
            f"(this is pyflux-mnist {__version__}, format {version})"
        )
    return meta


def recipe_from_meta(meta: dict[str, Any], path: Path) -> Recipe:
    try:
        return Recipe.from_dict(meta.get("recipe"))
    except PyfluxError as e:
        raise ModelFileError(f"{path}: bad recipe in metadata: {e}") from None


def first_line(e: BaseException) -> str:
    """Library messages can span lines (NumPy's do); a user error is one."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


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
    a = npz[name]
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelFileError(f"{path}: {name} contains NaN or Inf")
    return a
