"""The small surface every backend implements.

Python owns data, initial weights and batch order; a backend only turns ``(params, X, Y, batch)`` into a loss
and an updated ``params``. That is what lets NumPy, Flux and PyTorch be compared step for step.

Array conventions, shared by every backend:

* ``X``: ``(784, N)`` float32, a transposed view of a C-contiguous ``(N, 784)`` buffer, i.e. Fortran-ordered
  features × samples: Julia's native layout (juliacall passes it without a copy) and the one BLAS runs fastest
  for ``W @ X``.
* ``Y``: ``(10, N)`` float32 targets in the same layout.
* ``params``: ``[W1, b1, W2, b2, ...]`` float32, ``W`` of shape ``(out, in)`` as in Flux and PyTorch.
* a batch: ``None`` for the full batch, else an int64 array of sample indices (columns of ``X``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ..errors import SpecError
from ..spec import ModelSpec, Recipe


class Trainer(ABC):
    """One training run in progress: owns the parameters and the optimiser state."""

    #: Steps per :meth:`run` call from the training loop (whose progress and checkpoint bookkeeping happen
    #: once per call): large where a call is expensive (a trip into Julia) or a step is tiny (one sample).
    chunk_size: int = 1

    @abstractmethod
    def step(self, batch: np.ndarray | None) -> float:
        """One optimiser step on one batch; returns the loss on that batch before the update."""

    def run(self, batches: Sequence[np.ndarray | None]) -> np.ndarray:
        """Several steps; backends where a call is expensive (Flux) do these in one call."""
        return np.array([self.step(b) for b in batches], dtype=np.float64)

    @abstractmethod
    def parameters(self) -> list[np.ndarray]:
        """Copies of the current parameters, ``[W1, b1, ...]`` float32."""

    @abstractmethod
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimiser state, as plain arrays: ``t`` (steps done) and ``m/i``, ``v/i`` (Adam) or
        ``acc/i`` (RMSprop) for parameter ``i``. Enough to resume exactly."""

    @abstractmethod
    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`optimizer_state` returned."""


class Backend(ABC):
    """A way to run the arithmetic. Instances are cheap; heavy imports happen in :meth:`trainer`."""

    name: str = ""
    #: The update rules this backend implements (see ``spec.RULES``).
    rules: tuple[str, ...] = ("backprop",)

    def unavailable_reason(self) -> str | None:
        """``None`` if this backend can run here, else one line saying why not and how to fix it."""
        return None

    def check_recipe(self, recipe: Recipe) -> None:
        """Refuse a recipe whose update rule this backend does not implement."""
        if recipe.rule not in self.rules:
            raise SpecError(
                f"the {self.name} backend cannot run recipe {recipe.name!r}: its update rule {recipe.rule!r} "
                "is not a gradient step, and only the NumPy backend implements it; use --backend numpy"
            )

    def version(self) -> str:
        """A short version description for reports (library versions)."""
        return ""

    def threads(self) -> dict[str, int | str]:
        """The thread counts this backend computes with, for reports: by default NumPy's BLAS threads."""
        from ..blas import blas_threads

        return {"BLAS": blas_threads()}

    @abstractmethod
    def trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        """Start training ``recipe``'s network from ``params`` on ``X`` (784, N) and ``Y`` (10, N)."""

    @abstractmethod
    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(10, N)`` (for ``squared_error`` networks: the output activations)."""

    def predict(self, spec, params, X) -> np.ndarray:
        return np.argmax(self.probabilities(spec, params, X), axis=0)
