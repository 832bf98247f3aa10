"""backquery.py: Rashid's inverse for sigmoid networks, regularised optimisation for the others."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pyflux_mnist import backquery as bq
from pyflux_mnist import pictures
from pyflux_mnist.errors import PyfluxError


def test_method_follows_the_activations(small_model, rashid_model):
    assert bq.method_for(rashid_model.spec) == "rashid"
    assert bq.method_for(small_model.spec) == "optimise"
    with pytest.raises(PyfluxError, match="optimise"):
        bq.rashid_backquery(small_model)
    with pytest.raises(PyfluxError, match="unknown"):
        bq.backquery(small_model, "dream")


def test_rashid_backquery_matches_the_tutorial_code(rashid_model):
    """The tutorial's code, written out for one label, gives the same image."""
    imgs, method = bq.backquery(rashid_model)
    assert method == "rashid" and imgs.shape == (10, 28, 28)
    wih, who = (p.astype(np.float64) for p in rashid_model.params[::2])
    logit = lambda y: np.log(y / (1 - y))  # noqa: E731
    for label in (0, 7):
        targets = np.full(10, 0.01)
        targets[label] = 0.99
        hidden = who.T @ logit(targets)
        hidden = (hidden - hidden.min()) / (hidden.max() - hidden.min()) * 0.98 + 0.01
        inputs = wih.T @ logit(hidden)
        inputs = (inputs - inputs.min()) / (inputs.max() - inputs.min()) * 0.98 + 0.01
        assert np.allclose(imgs[label].ravel(), (inputs - 0.01) / 0.98, atol=1e-5)
    assert imgs.min() >= 0 and imgs.max() <= 1
    # Most of the pictures are read back as their own digit (a 3000-step network: measured 9 of 10).
    assert np.sum(rashid_model.predict(imgs) == np.arange(10)) >= 7


def test_optimised_inputs_are_read_as_their_digit(small_model):
    imgs, method = bq.backquery(small_model, steps=150)
    assert method == "optimise" and imgs.shape == (10, 28, 28)
    assert imgs.min() >= 0 and imgs.max() <= 1
    p = small_model.probabilities(imgs)
    assert np.array_equal(np.argmax(p, axis=1), np.arange(10))
    assert np.all(p[np.arange(10), np.arange(10)] > 0.5)  # a 40-step model; 1.00 with 200 steps
    # The priors keep them sparse and smooth, like digits, not saturated noise.
    assert 0.03 < imgs.mean() < 0.35
    assert np.abs(np.diff(imgs, axis=2)).mean() < 0.1


def test_panel_picture(tmp_path, small_model):
    imgs, method = bq.backquery(small_model, steps=50)
    path = tmp_path / "bq.png"
    pictures.backquery_png(imgs, path, method)
    img = Image.open(path)
    layout = pictures.grid_layout(10, cols=5, scale=4)
    assert img.size == layout.size
    for d in range(10):
        panel = np.asarray(img.crop(layout.box(d)).convert("L"))[::4, ::4].astype(int)
        assert np.abs(panel - np.rint(imgs[d] * 255)).max() <= 1
