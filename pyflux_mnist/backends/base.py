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

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ..blas import blas_threads
from ..errors import SpecError
from ..spec import ModelSpec, Recipe

#: Flux.crossentropy adds eps(Float32) inside the log, also for Float64 inputs built from Float32 models;
#: every backend's crossentropy must add the same.
CE_EPS = float(np.finfo(np.float32).eps)
#: The optimiser state slots each optimiser keeps, in this order (see :meth:`Trainer.optimizer_state`).
SLOTS: dict[str, tuple[str, ...]] = {"adam": ("m", "v"), "rmsprop": ("acc",), "descent": ()}


def slot_key(slot: str, i: int) -> str:
    """The key of slot ``slot`` (e.g. Adam's ``m``) of parameter ``i`` in an optimiser-state dict."""
    return f"{slot}/{i}"


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
        """The optimiser state, as plain arrays: ``t`` (steps done) and, for each of the optimiser's
        :data:`SLOTS` and each parameter ``i``, ``slot_key(slot, i)`` (``m/0``). Enough to resume exactly."""

    @abstractmethod
    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`optimizer_state` returned."""


class Backend(ABC):
    """A way to run the arithmetic. Instances are cheap; heavy imports happen in :meth:`trainer`."""

    name: str = ""
    #: The update rules this backend implements (see ``spec.RULES``).
    rules: tuple[str, ...] = ("backprop",)
    #: The module :meth:`load_library` imports: the backend's library (``"torch"``), or the module holding
    #: its trainer when that is all there is to load.
    library: str = ""
    #: The distribution whose version reports show for this backend (``None``: nothing beyond NumPy).
    distribution: str | None = None

    def unavailable_reason(self) -> str | None:
        """``None`` if this backend can run here, else one line saying why not and how to fix it."""
        return None

    def unconfirmed(self) -> str | None:
        """``None`` if :meth:`unavailable_reason`'s answer is final; else why this backend, not known to be
        unavailable, is not known to work either until it starts (``info`` then says "not checked")."""
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

    def load_library(self) -> dict[str, float]:
        """Import (or start) this backend's library now; seconds per phase, at least ``"import"`` (the
        total). ``bench`` calls it before building a trainer so that this cost is measured on its own."""
        t0 = time.perf_counter()
        importlib.import_module(self.library or type(self).__module__)
        return {"import": time.perf_counter() - t0}

    def pin_threads(self, threads: int) -> None:
        """Give this backend's own thread pools ``threads`` threads (``bench`` calls it; NumPy's BLAS and
        Julia's follow the thread variables bench sets before the process starts)."""
        return None

    def details(self) -> dict[str, object]:
        """What ``pyflux-mnist info`` shows about this backend beyond available/unavailable (cheap: never
        starts a runtime that is not running yet)."""
        return {}

    def details_line(self) -> str | None:
        """:meth:`details` as one line for ``info`` (``None``: nothing to add)."""
        details = self.details()
        return ", ".join(f"{k} {v}" for k, v in details.items()) if details else None

    def threads(self) -> dict[str, int | str]:
        """The thread counts this backend computes with, for reports (``doctor``, and ``bench`` after
        :meth:`pin_threads`): by default NumPy's BLAS threads."""

        return {"BLAS": blas_threads()}

    def trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        """Start training ``recipe``'s network from ``params`` on ``X`` (784, N) and ``Y`` (10, N).

        The recipe check is here, once for every backend, because a trainer started on a recipe it cannot
        express would compute the wrong numbers; a :class:`~pyflux_mnist.run.Run` was checked already, before
        any data was loaded, so that a user hears it at once."""
        self.check_recipe(recipe)
        return self._trainer(recipe, params, X, Y)

    @abstractmethod
    def _trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        """The backend's own trainer for a recipe it can express."""

    @abstractmethod
    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(10, N)`` (for ``squared_error`` networks: the output activations)."""

    def predict(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Predicted labels ``(N,)``: the first maximum of each column, as ``Flux.onecold``."""
        return np.argmax(self.probabilities(spec, params, X), axis=0)
