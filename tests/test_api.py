"""The public API as the README shows it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import pyflux_mnist as pm


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
