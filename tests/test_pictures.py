"""pictures.py: grids read back panel by panel, charts checked for size and content."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pyflux_mnist import pictures
from pyflux_mnist.errors import PyfluxError


def _panel(img: Image.Image, layout: pictures.GridLayout, i: int) -> np.ndarray:
    """Panel i read back at 28x28 (every scale-th pixel)."""
    a = np.asarray(img.crop(layout.box(i)).convert("L"))
    return a[:: layout.scale, :: layout.scale]


def test_samples_grid_panels_are_the_digits(tmp_path, mnist):
    path = tmp_path / "samples.png"
    pictures.samples_png(mnist.train_images, mnist.train_labels, path, n=25)
    img = Image.open(path)
    layout = pictures.grid_layout(25)
    assert img.size == layout.size and img.mode == "RGB"
    for i in range(25):
        assert np.array_equal(_panel(img, layout, i), mnist.train_images[i])
        caption = np.asarray(img.crop(layout.caption_box(i)).convert("L"))
        assert caption.max() > 150  # text is drawn under every panel
    # Different labels give different caption pixels; equal labels the same ones.
    caps = [np.asarray(img.crop(layout.caption_box(i)).convert("L")) for i in range(25)]
    labels = mnist.train_labels[:25]
    for i in range(25):
        for j in range(i + 1, 25):
            assert np.array_equal(caps[i], caps[j]) == (labels[i] == labels[j])


def test_errors_grid_shows_only_misclassified(tmp_path, mnist):
    labels = mnist.test_labels[:50].copy()
    pred = labels.copy()
    wrong = [3, 17, 41]
    pred[wrong] = (labels[wrong] + 1) % 10
    path = tmp_path / "errors.png"
    pictures.errors_png(mnist.test_images[:50], labels, pred, path)
    img = Image.open(path)
    layout = pictures.grid_layout(3)
    assert img.size == layout.size
    for k, i in enumerate(wrong):
        assert np.array_equal(_panel(img, layout, k), mnist.test_images[i])
    none = tmp_path / "none.png"
    pictures.errors_png(mnist.test_images[:5], labels[:5], labels[:5], none)
    assert Image.open(none).size[0] > 0


def test_weights_are_signed_and_per_unit(tmp_path):
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(12, 784)).astype(np.float32)
    W1[5] = 0
    model = type("M", (), {"params": [W1]})()
    path = tmp_path / "weights.png"
    pictures.weights_png(model, path)
    img = Image.open(path)
    layout = pictures.grid_layout(12)
    assert img.size == layout.size
    for i in range(12):
        p = np.asarray(img.crop(layout.box(i)))[:: layout.scale, :: layout.scale].astype(int)
        w = W1[i].reshape(28, 28)
        if i == 5:
            assert p.max() == 0
            continue
        assert np.all(p[w > 0.2 * abs(w).max()][:, 0] > p[w > 0.2 * abs(w).max()][:, 2])  # orange
        assert np.all(p[w < -0.2 * abs(w).max()][:, 2] > p[w < -0.2 * abs(w).max()][:, 0])  # blue


def test_loss_curve_and_confusion(tmp_path):
    pytest.importorskip("matplotlib")
    losses = 2.3 * np.exp(-np.arange(300) / 60) + 0.1 + 0.02 * np.random.default_rng(0).random(300)
    path = tmp_path / "loss.png"
    pictures.loss_curve_png(losses, path, epoch_steps=100, title="test")
    img = np.asarray(Image.open(path).convert("L"))
    assert img.shape == (400, 700) and img.std() > 10
    labels = np.repeat(np.arange(10), 20)
    pred = labels.copy()
    pred[::7] = 3
    m = pictures.confusion_png(labels, pred, tmp_path / "confusion.png")
    assert m.sum() == 200 and np.trace(m) == np.sum(pred == labels)
    assert m[5, 3] == np.sum((labels == 5) & (pred == 3))
    c = np.asarray(Image.open(tmp_path / "confusion.png").convert("L"))
    assert c.shape == (560, 640) and c.std() > 10


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(PyfluxError, match=r"pyflux-mnist\[plots\]"):
        pictures.loss_curve_png([1.0, 0.5], tmp_path / "x.png")


def test_unwritable_path(tmp_path):
    with pytest.raises(PyfluxError, match="cannot write"):
        pictures.samples_png(np.zeros((1, 28, 28), np.uint8), np.zeros(1), tmp_path / "no" / "x.png")
