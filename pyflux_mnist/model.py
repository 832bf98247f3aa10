"""A trained network: its recipe, its float32 weights, and one safe file format for every backend.

The file is the safe ``.npz`` container of :mod:`pyflux_mnist.safe_npz`: ``W1, b1, W2, b2, ...`` as
float32 in Flux's and PyTorch's ``(out, in)`` orientation, plus ``meta``, a JSON string with the recipe,
backend, accuracies and package version. Saves are atomic; loads validate every name, shape and dtype
before any array is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import numpy_maths
from .errors import ModelFileError, PyfluxError
from .prepare import scale_images, scale_unit_images
from .recipes import recipe_label
from .safe_npz import open_npz, read_array, read_meta, write_npz
from .spec import Recipe

FORMAT = "pyflux-mnist-model"
FORMAT_VERSION = 1
#: Float images may stray this far outside [0, 1] (rounding in whoever computed them).
UNIT_SLACK = 1e-6


@dataclass(eq=False)
class Model:
    """A network that can predict MNIST digits with NumPy, whichever backend trained it.

    ``a == b``: the same recipe and bit-identical weights, so the same predictions for every image (``meta``,
    who trained it and how well, is not compared: a model and the file it was saved to are equal). A model
    is mutable, so it has no hash.
    """

    recipe: Recipe
    params: list[np.ndarray]  # [W1, b1, W2, b2, ...] float32, W (out, in)
    meta: dict[str, Any] = field(default_factory=dict)  # backend, accuracies, seed, ...

    def __post_init__(self) -> None:
        self.params = [np.ascontiguousarray(p, dtype=np.float32) for p in self.params]
        expected = self.recipe.model.param_shapes
        got = [p.shape for p in self.params]
        if got != expected:
            raise ModelFileError(f"parameter shapes {got} do not match the recipe's {expected}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return self.recipe == other.recipe and all(
            np.array_equal(a, b) for a, b in zip(self.params, other.params, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # equal models may differ later: params are mutable

    def __repr__(self) -> str:  # one line: the weights are in .params
        acc = self.meta.get("test_accuracy")
        return (
            f"Model({recipe_label(self.recipe)}, sizes {'-'.join(map(str, self.spec.sizes))}, "
            f"backend {self.meta.get('backend', '?')}"
            + (f", test accuracy {acc:.4f})" if isinstance(acc, float) else ")")
        )

    def _repr_html_(self) -> str:  # Jupyter: a card with the first-layer weights
        from .rich_display import model_html

        return model_html(self)

    def _repr_png_(self) -> bytes:  # Jupyter front ends without HTML: the weights
        from .rich_display import weights_png_bytes

        return weights_png_bytes(self)

    @property
    def spec(self):
        return self.recipe.model

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """Images → ``(784, N)`` float32 in the recipe's scale.

        ``images``: ``(N, 28, 28)``, ``(N, 784)``, or one image ``(28, 28)`` or ``(784,)``; either uint8 (any
        integer type) 0..255 as MNIST stores them, or floats in [0, 1]. Anything else is refused: floats
        0..255 would otherwise be read as a picture 255 times too bright and give confident nonsense.
        """
        images = np.asarray(images)
        if images.shape in ((28, 28), (784,)):
            images = images[None]
        if images.size == 0:
            raise PyfluxError(f"no images to read: the array is empty (shape {images.shape})")
        if images.ndim not in (2, 3) or images[0].size != 784:
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

        ``images``: uint8 0..255 or floats in [0, 1], ``(N, 28, 28)``, ``(N, 784)`` or one image.
        Finite but huge weights (a damaged or hostile file) overflow float32 to Inf and NaN: refused here,
        so no NaN reaches a prediction or a JSON output.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            probs = numpy_maths.probabilities(self.spec, self.params, self.inputs(images)).T
        if not np.all(np.isfinite(probs)):
            raise overflow_error()
        return probs

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``(N,)`` predicted labels 0..9 (the first maximum, as ``Flux.onecold``); ``images`` as for
        :meth:`probabilities`."""
        return np.argmax(self.probabilities(images), axis=1).astype(np.uint8)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """The fraction of ``images`` whose predicted digit is its label (``labels``: ``(N,)`` digits 0..9,
        one per image; ``images`` as for :meth:`probabilities`)."""
        labels = np.asarray(labels)
        predicted = self.predict(images)
        if labels.shape != predicted.shape:
            raise PyfluxError(f"{len(predicted)} image(s) but labels of shape {labels.shape}")
        return float(np.mean(predicted == labels))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically: the previous file stays intact if anything fails."""
        arrays = {entry_name(i): p for i, p in enumerate(self.params)}
        meta = {"recipe": self.recipe.to_dict(), **self.meta}
        return write_npz(path, FORMAT, FORMAT_VERSION, "model", meta, arrays)


def overflow_error() -> ModelFileError:
    """What a model whose arithmetic overflows float32 (finite but huge weights) is told, wherever it runs."""
    return ModelFileError(
        "the model's outputs are not finite numbers (its weights overflow float32); "
        "the model file is damaged or was not trained by pyflux-mnist"
    )


def entry_name(i: int) -> str:
    """Entry names: W1, b1, W2, b2, ..."""
    return f"{'Wb'[i % 2]}{i // 2 + 1}"


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read and validate a model file; any problem is one :class:`ModelFileError` line."""
    path = Path(path)
    with open_npz(path, "model file") as npz:
        meta = read_meta(npz, path, FORMAT, FORMAT_VERSION, "model file")
        recipe = recipe_from_meta(meta, path)
        expected = recipe.model.param_shapes
        wanted = {entry_name(i) for i in range(len(expected))} | {"meta"}
        if set(npz.files) != wanted:
            raise ModelFileError(f"{path}: expected entries {sorted(wanted)}, found {sorted(npz.files)}")
        params = [read_array(npz, entry_name(i), np.float32, s, path) for i, s in enumerate(expected)]
    meta = {k: v for k, v in meta.items() if k != "recipe"}
    return Model(recipe, params, meta)


def recipe_from_meta(meta: dict[str, Any], path: Path) -> Recipe:
    try:
        return Recipe.from_dict(meta.get("recipe"))  # type: ignore[arg-type]  # from_dict checks it
    except PyfluxError as e:
        raise ModelFileError(f"{path}: bad recipe in metadata: {e}") from None
