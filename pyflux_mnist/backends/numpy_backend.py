"""The NumPy backend: the reference trainer (:mod:`.numpy_maths` called the plain way), the fast trainer
(:mod:`.numpy_trainer`) and Rashid's rule (:mod:`.rashid`) behind the backend surface."""

from __future__ import annotations

import numpy as np

from ..spec import ModelSpec, Recipe
from .base import Backend, Trainer
from .numpy_maths import Optimizer, loss_and_grads, probabilities

# --- the trainers -----------------------------------------------------------------------------------


class ReferenceTrainer(Trainer):
    """Training written the plain way: :func:`loss_and_grads`, then :class:`Optimizer`. It allocates every
    intermediate anew and is slow; :class:`~.numpy_trainer.NumpyTrainer` must give the same losses (the tests
    check)."""

    def __init__(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        self.spec = recipe.model
        self.params = [np.array(p, dtype=np.float32, copy=True) for p in params]
        self.X, self.Y = X, Y
        # Row-major views of the (feature, sample) data: gathering a batch copies whole rows.
        self._X_rows, self._Y_rows = X.T, Y.T
        self.optimizer = Optimizer(recipe.optimizer, self.params)
        self.trainable = [True, self.spec.bias] * self.spec.n_layers

    def _batch(self, batch: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if batch is None:
            return self.X, self.Y
        # (B, 784) contiguous copy of the chosen samples, then the (784, B) view.
        return np.take(self._X_rows, batch, axis=0).T, np.take(self._Y_rows, batch, axis=0).T

    def step(self, batch: np.ndarray | None) -> float:
        X, Y = self._batch(batch)
        # Overflow shows up as a NaN/Inf loss, which the training loop reports as divergence.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, grads = loss_and_grads(self.spec, self.params, X, Y)
            self.optimizer.update(self.params, grads, self.trainable)
        return loss

    def parameters(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.optimizer.state()

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state(state)


class NumpyBackend(Backend):
    name = "numpy"
    rules = ("backprop", "rashid")
    library = "pyflux_mnist.backends.numpy_trainer"

    def version(self) -> str:
        return f"numpy {np.__version__}"

    def _trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        if recipe.rule == "rashid":  # Rashid's hand-derived rule, not a gradient: see backends/rashid.py
            from .rashid import RashidTrainer  # loads SciPy (and its own BLAS): only for Rashid's recipes

            return RashidTrainer(recipe, params, X, Y)
        from .numpy_trainer import NumpyTrainer  # here: bench times this import as the backend's ``library``

        return NumpyTrainer(recipe, params, X, Y)

    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        return probabilities(spec, params, X)
