"""The backend registry: the one place that maps a name to a backend.

Backends are imported lazily, so ``import pyflux_mnist`` never loads torch or Julia.
"""

from __future__ import annotations

import importlib

from ..errors import BackendUnavailable, SpecError
from ..spec import Recipe
from .base import Backend, Trainer

#: name -> "module:class". Order is the order reports list them in.
BACKENDS: dict[str, str] = {
    "numpy": "pyflux_mnist.backends.numpy_backend:NumpyBackend",
    "flux": "pyflux_mnist.backends.flux_backend:FluxBackend",
    "torch": "pyflux_mnist.backends.torch_backend:TorchBackend",
}


#: The backend every other one is checked against (``pyflux-mnist doctor``): plain NumPy, always available.
REFERENCE_BACKEND = "numpy"


def backend_names() -> list[str]:
    return list(BACKENDS)


def _load(name: str) -> Backend:
    if name not in BACKENDS:
        raise SpecError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a clear error if it is unknown or cannot run here."""
    backend = _load(name)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    return backend


def backend_status(recipe: Recipe | None = None) -> dict[str, str | None]:
    """``{name: None if usable else the reason}`` for every registered backend (and for ``recipe``)."""
    status: dict[str, str | None] = {}
    for name in BACKENDS:
        backend = _load(name)
        status[name] = backend.unavailable_reason()
        if status[name] is None and recipe is not None:
            try:
                backend.check_recipe(recipe)
            except SpecError as e:
                status[name] = str(e)
    return status


def available_backends() -> list[str]:
    return [name for name, reason in backend_status().items() if reason is None]


__all__ = [
    "BACKENDS",
    "REFERENCE_BACKEND",
    "Backend",
    "Trainer",
    "available_backends",
    "backend_names",
    "backend_status",
    "get_backend",
]
