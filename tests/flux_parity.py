"""What the Flux parity tests (``test_flux_backend.py``) and their PyTorch twins (``test_julia_twins.py``)
share, so that a twin runs exactly the scenario it stands in for: the data, the near-tie rule and the
minibatch cases."""

from __future__ import annotations

import numpy as np

from pyflux_mnist.spec import ModelSpec, OptimizerSpec


def mnist_xy(images: np.ndarray, labels: np.ndarray, n: int, on: float = 1.0, off: float = 0.0):
    """The first ``n`` digits: ``X`` ``(784, n)`` in 0..1, one-hot ``Y`` ``(10, n)`` with ``on``/``off``."""
    X = (images[:n].reshape(n, 784).astype(np.float32) / 255).T  # (784, n) F-ordered view
    Y = np.full((n, 10), off, dtype=np.float32)
    Y[np.arange(n), labels[:n]] = on
    return X, Y.T


def near_tie(P: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """``(N,)``: the columns of ``P`` whose two largest probabilities are closer than ``tol``."""
    top2 = np.sort(P, axis=0)[-2:]
    return (top2[1] - top2[0]) < tol


#: Minibatch parity cases: one per loss, optimiser and shape the backends must agree on.
CASES = {
    "crossentropy-adam": (ModelSpec((784, 32, 10), ("relu", "identity"), "crossentropy"), OptimizerSpec()),
    "logitce-rmsprop": (
        ModelSpec((784, 64, 10), ("tanh", "identity"), "logitcrossentropy"),
        OptimizerSpec("rmsprop", lr=1e-3, eps=1e-7),
    ),
    "squared-descent-nobias": (
        ModelSpec((784, 50, 10), ("sigmoid", "sigmoid"), "squared_error", bias=False),
        OptimizerSpec("descent", lr=0.1),
    ),
    "deep-identity-adam": (
        ModelSpec((784, 64, 32, 10), ("identity", "relu", "identity"), "logitcrossentropy"),
        OptimizerSpec("adam", lr=1e-4),
    ),
}
