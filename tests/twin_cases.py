"""What the backend-twin tests share: the networks every backend must train alike, and where two backends
may honestly disagree on a prediction."""

from __future__ import annotations

import numpy as np

from pyflux_mnist.spec import ModelSpec, OptimizerSpec

#: One network per loss, activation and optimiser family, each trained by both twins from the same weights.
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


def near_tie(P: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """(N,) True where the top two of the (10, N) probabilities ``P`` lie within ``tol``: float32 rounding
    may pick either digit there."""
    top2 = np.sort(P, axis=0)[-2:]
    return (top2[1] - top2[0]) < tol
