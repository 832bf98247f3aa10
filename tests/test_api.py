"""The public API as the README shows it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import pyflux_mnist as pm
from pyflux_mnist.errors import PyfluxError


def test_import_loads_neither_torch_nor_julia() -> None:
    code = "import sys, pyflux_mnist; print('torch' in sys.modules, 'juliacall' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_readme_example(mnist, tmp_path) -> None:
    result = pm.train("flux-tutorial", backend="numpy", data=mnist, seed=0, steps=10)
    assert isinstance(result, pm.TrainResult) and len(result.losses) == 10
    path = result.model.save(tmp_path / "tutorial.npz")
    model = pm.load_model(path)
    images = mnist.test_images[:100]
    labels = model.predict(images)
    assert labels.shape == (100,)
    np.testing.assert_array_equal(labels, result.test_predictions[:100])
    assert model.probabilities(images).shape == (100, 10)
    assert pm.get_recipe("flux-tutorial") is pm.RECIPES["flux-tutorial"]
    assert pm.RECIPES["keras"].replace(steps=50).steps == 50


def test_models_compare_by_recipe_and_weights(small_model, tmp_path) -> None:
    """main: ``a == b`` raised NumPy's "truth value of an array ... is ambiguous"."""
    saved = pm.load_model(small_model.save(tmp_path / "m.npz"))
    assert saved == small_model and saved is not small_model  # meta (who trained it) is not compared
    changed = pm.Model(small_model.recipe, [p.copy() for p in small_model.params])
    changed.params[0][0, 0] += 1
    assert changed != small_model
    assert small_model != "a model" and small_model != small_model.recipe
    with pytest.raises(TypeError):
        hash(small_model)  # mutable weights: no hash


def test_predict_edges(small_model, mnist) -> None:
    with pytest.raises(PyfluxError, match=r"^no images to read: the array is empty \(shape \(0, 28, 28\)\)$"):
        small_model.predict(np.zeros((0, 28, 28), np.uint8))  # main: blamed the shape
    one = mnist.test_images[0]
    assert (
        small_model.predict(one.reshape(784)).tolist() == small_model.predict(one).tolist()
    )  # main: refused
    assert small_model.predict(one.reshape(784)).shape == (1,)
    images, labels = mnist.test_images[:50], mnist.test_labels[:50]
    assert small_model.accuracy(images, labels) == float(np.mean(small_model.predict(images) == labels))
    assert pm.Model.accuracy.__doc__
    with pytest.raises(PyfluxError, match=r"50 image\(s\) but labels of shape \(49,\)"):
        small_model.accuracy(images, labels[:49])
