"""The first digits of real MNIST, shaped like :class:`pyflux_mnist.mnist.MnistData` for ``train()`` and
``prepare()``: small, fast runs on real data."""

from __future__ import annotations


class Subset:
    """The first ``n_train`` training digits and the first ``n_test`` test digits (all when ``None``)."""

    def __init__(self, mnist, n_train: int, n_test: int | None = None) -> None:
        self.train_images, self.train_labels = mnist.train_images[:n_train], mnist.train_labels[:n_train]
        self.test_images, self.test_labels = mnist.test_images[:n_test], mnist.test_labels[:n_test]
