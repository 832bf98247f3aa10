"""backquery.py: Rashid's inverse for sigmoid networks, regularised optimisation for the others."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pyflux_mnist import backquery as bq
from pyflux_mnist import pictures
from pyflux_mnist.errors import PyfluxError


@pytest.fixture(scope="module")
def prior(mnist):
    return bq.digit_prior(mnist.train_images, n=5000)


@pytest.fixture(scope="module")
def other_model(mnist):
    """An independent judge: another recipe (keras: 512 hidden units, minibatches), another seed, and
    training digits 30000-39999, none of which the small model saw."""
    from pyflux_mnist.training import train

    class Other:
        train_images, train_labels = mnist.train_images[30000:40000], mnist.train_labels[30000:40000]
        test_images, test_labels = mnist.test_images[:1000], mnist.test_labels[:1000]

    return train("keras", data=Other, steps=100, seed=1).model


def _class_mean_similarity(mnist, imgs: np.ndarray) -> np.ndarray:
    """(10, 10) correlation of each image with the mean training digit of each class (digits 30000-39999)."""
    X = mnist.train_images[30000:40000].reshape(-1, 784).astype(np.float64)
    y = mnist.train_labels[30000:40000]
    means = np.stack([X[y == k].mean(axis=0) for k in range(10)])
    a = imgs.reshape(10, 784) - imgs.reshape(10, 784).mean(axis=1, keepdims=True)
    c = means - means.mean(axis=1, keepdims=True)
    return (a @ c.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(c, axis=1))


def test_method_follows_the_activations(small_model, rashid_model):
    assert bq.method_for(rashid_model.spec) == "rashid"
    assert bq.method_for(small_model.spec) == "prior"
    with pytest.raises(PyfluxError, match="'prior' method"):
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


def test_digit_prior_is_learned_without_labels(mnist, prior):
    assert prior.mean.shape == (784,) and prior.basis.shape == (784, 100) and prior.scales.shape == (100,)
    assert np.allclose(prior.basis.T @ prior.basis, np.eye(100), atol=1e-4)
    assert np.all(np.diff(prior.scales) <= 0) and prior.scales[-1] > 0
    assert np.allclose(prior.image(np.zeros((100, 1)))[:, 0], prior.mean)
    with pytest.raises(PyfluxError, match="components"):
        bq.digit_prior(mnist.train_images, components=0)


def test_prior_backqueries_are_read_as_their_digit_by_an_independent_model(
    mnist, small_model, other_model, prior
):
    imgs, method = bq.backquery(small_model, prior=prior)
    assert method == "prior" and imgs.shape == (10, 28, 28) and imgs.dtype == np.float32
    assert imgs.min() >= 0 and imgs.max() <= 1
    assert np.array_equal(small_model.predict(imgs), np.arange(10))
    # Another recipe, seed and set of training digits reads every picture as the digit asked for...
    assert np.array_equal(other_model.predict(imgs), np.arange(10))
    # ...and so does the plainest judge: each picture is closest to the mean training digit of its class,
    # much closer than the prior-free pictures (which people do not read as digits: docs/images.md).
    sim = _class_mean_similarity(mnist, imgs)
    assert np.array_equal(sim.argmax(axis=1), np.arange(10)) and np.diag(sim).min() > 0.8
    plain, _ = bq.backquery(small_model, "optimise")
    assert np.diag(sim).mean() > np.diag(_class_mean_similarity(mnist, plain)).mean() + 0.2


def test_prior_backquery_without_a_prior_learns_one(small_model, monkeypatch, mnist_dir):
    monkeypatch.setenv("PYFLUX_MNIST_DATA", str(mnist_dir))
    imgs, method = bq.backquery(small_model, "prior", steps=20)
    assert method == "prior" and imgs.shape == (10, 28, 28)
    with pytest.raises(PyfluxError, match="strength"):
        bq.backquery(small_model, "prior", steps=0)


def test_optimised_inputs_are_read_as_their_digit(small_model):
    imgs, method = bq.backquery(small_model, "optimise", steps=150)
    assert method == "optimise" and imgs.shape == (10, 28, 28)
    assert imgs.min() >= 0 and imgs.max() <= 1
    p = small_model.probabilities(imgs)
    assert np.array_equal(np.argmax(p, axis=1), np.arange(10))
    assert np.all(p[np.arange(10), np.arange(10)] > 0.5)  # a 40-step model; 1.00 with 200 steps
    # The priors keep them sparse and smooth, like digits, not saturated noise.
    assert 0.03 < imgs.mean() < 0.35
    assert np.abs(np.diff(imgs, axis=2)).mean() < 0.1


def test_panel_picture(tmp_path, small_model, prior):
    imgs, method = bq.backquery(small_model, prior=prior, steps=50)
    path = tmp_path / "bq.png"
    p = small_model.probabilities(imgs)
    wrong = p.copy()
    wrong[4] = np.roll(wrong[4], 1)  # a reader that sees a 5 in panel 4
    grid = pictures.backquery_png(imgs, path, method, small_model, [("self", p), ("other", wrong)])
    img = Image.open(path)
    layout = grid.layout
    assert img.size == layout.size and layout.cols == 5 and layout.caption_lines == 3
    for d in range(10):
        panel = np.asarray(img.crop(layout.box(d)).convert("L"))[:: layout.scale, :: layout.scale]
        assert np.abs(panel.astype(int) - np.rint(imgs[d] * 255)).max() <= 1
        caption = np.asarray(img.crop(layout.caption_box(d))).astype(int)
        ink = caption[caption.sum(axis=2) < 400]
        assert len(ink)
        assert np.all(ink[:, 0] > ink[:, 1] + 60) == (d == 4)  # red where a reader disagrees
    assert np.asarray(img.convert("L"))[: layout.top].min() < 60  # a title
