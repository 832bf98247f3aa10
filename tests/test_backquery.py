"""backquery.py: Rashid's inverse for sigmoid networks, regularised optimisation for the others."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_photo import LocalMnist, quick_model

from pyflux_mnist import backquery as bq
from pyflux_mnist import pictures
from pyflux_mnist.errors import PyfluxError


@pytest.fixture(scope="module")
def local_mnist() -> LocalMnist:
    return LocalMnist()


@pytest.fixture(scope="module")
def relu_model(local_mnist):
    return quick_model(local_mnist)


@pytest.fixture(scope="module")
def sigmoid_model(local_mnist):
    from pyflux_mnist.training import resolve_recipe, train

    return train(resolve_recipe("rashid", steps=3000), data=local_mnist, seed=0).model


def test_method_follows_the_activations(relu_model, sigmoid_model):
    assert bq.method_for(sigmoid_model.spec) == "rashid"
    assert bq.method_for(relu_model.spec) == "optimise"
    with pytest.raises(PyfluxError, match="optimise"):
        bq.rashid_backquery(relu_model)
    with pytest.raises(PyfluxError, match="unknown"):
        bq.backquery(relu_model, "dream")


def test_rashid_backquery_matches_the_tutorial_code(sigmoid_model):
    """The tutorial's code, written out for one label, gives the same image."""
    imgs, method = bq.backquery(sigmoid_model)
    assert method == "rashid" and imgs.shape == (10, 28, 28)
    wih, who = (p.astype(np.float64) for p in sigmoid_model.params[::2])
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
    assert np.sum(sigmoid_model.predict(imgs * 255) == np.arange(10)) >= 7


def test_optimised_inputs_are_read_as_their_digit(relu_model):
    imgs, method = bq.backquery(relu_model, steps=150)
    assert method == "optimise" and imgs.shape == (10, 28, 28)
    assert imgs.min() >= 0 and imgs.max() <= 1
    p = relu_model.probabilities(imgs * 255)
    assert np.array_equal(np.argmax(p, axis=1), np.arange(10))
    assert np.all(p[np.arange(10), np.arange(10)] > 0.5)  # a 40-step model; 1.00 with 200 steps
    # The priors keep them sparse and smooth, like digits, not saturated noise.
    assert 0.03 < imgs.mean() < 0.35
    assert np.abs(np.diff(imgs, axis=2)).mean() < 0.1


def test_panel_picture(tmp_path, relu_model):
    imgs, method = bq.backquery(relu_model, steps=50)
    path = tmp_path / "bq.png"
    pictures.backquery_png(imgs, path, method)
    img = Image.open(path)
    layout = pictures.grid_layout(10, cols=5, scale=4)
    assert img.size == layout.size
    for d in range(10):
        panel = np.asarray(img.crop(layout.box(d)).convert("L"))[::4, ::4].astype(int)
        assert np.abs(panel - np.rint(imgs[d] * 255)).max() <= 1
