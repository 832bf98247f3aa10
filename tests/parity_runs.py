"""Two backends trained side by side from the same weights on the same batches, for the parity tests."""

from __future__ import annotations

from typing import Any

from subset import Subset

from pyflux_mnist.backends.base import Backend
from pyflux_mnist.backends.numpy_backend import NumpyBackend
from pyflux_mnist.init import run_start
from pyflux_mnist.prepare import prepare
from pyflux_mnist.spec import Recipe


def numpy_and(other: Backend, recipe: Recipe, mnist: Any, n: int, steps: int) -> dict[str, tuple]:
    """The first ``steps`` batches of ``recipe`` on the first ``n`` training digits, on NumPy and on
    ``other``: ``{name: (losses, parameters, backend, prepared)}``."""
    prepared = prepare(Subset(mnist, n), recipe.data)
    params, sched = run_start(recipe, prepared.X_train.shape[1], seed=0)
    batches = list(sched)[:steps]
    results = {}
    for backend in (NumpyBackend(), other):
        trainer = backend.trainer(recipe, params, prepared.X_train, prepared.Y_train)
        results[backend.name] = (trainer.run(batches), trainer.parameters(), backend, prepared)
    return results
