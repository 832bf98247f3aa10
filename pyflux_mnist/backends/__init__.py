"""The backend registry: the one place that maps a name to a backend.

Backends are imported lazily, so ``import pyflux_mnist`` never loads torch or Julia.
"""

from __future__ import annotations

import importlib

from ..errors import BackendUnavailable, SpecError, did_you_mean
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


def check_name(name: str) -> str:
    """``name`` if it is a registered backend, else a :class:`SpecError` that suggests the close name and
    lists every known backend with why it cannot run here."""
    if name in BACKENDS:
        return name
    known = [n if why is None else f"{n} (unavailable: {why})" for n, why in backend_status().items()]
    hint = did_you_mean(name, BACKENDS)
    raise SpecError(f"unknown backend {name!r}{hint}; known backends: {', '.join(known)}")


def _load(name: str) -> Backend:
    module, cls = BACKENDS[check_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)()


def get_backend(name: str, recipe: Recipe | None = None) -> Backend:
    """The backend called ``name``; a clear error if it is unknown, cannot run ``recipe`` (said first: no
    installing helps there) or cannot run here."""
    backend = _load(name)
    if recipe is not None:
        backend.check_recipe(recipe)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    return backend


def backend_status(recipe: Recipe | None = None) -> dict[str, str | None]:
    """``{name: None if usable else the reason}`` for every registered backend (and for ``recipe``)."""
    status: dict[str, str | None] = {}
    for name, target in BACKENDS.items():
        module, cls = target.split(":")
        backend: Backend = getattr(importlib.import_module(module), cls)()
        status[name] = backend.unavailable_reason()
        if recipe is not None:
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
    "check_name",
    "get_backend",
]
