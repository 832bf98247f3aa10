"""The backend registry: the one place that maps a name to a backend.

Backends are imported lazily, so ``import pyflux_mnist`` never loads torch or Julia.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

from ..errors import BackendUnavailable, SpecError, unknown_name
from ..spec import Recipe
from .base import Backend, Trainer

#: name -> "module:class". Order is the order reports list them in.
BACKENDS: dict[str, str] = {
    "numpy": "pyflux_mnist.backends.numpy_backend:NumpyBackend",
    "flux": "pyflux_mnist.backends.flux_backend:FluxBackend",
    "torch": "pyflux_mnist.backends.torch_backend:TorchBackend",
    "jax": "pyflux_mnist.backends.jax_backend:JaxBackend",
}
#: The reference backend: plain NumPy, always available; the default everywhere, what bench's "× numpy"
#: ratios are taken against and what ``pyflux-mnist doctor`` checks every other backend against.
REFERENCE = "numpy"


def backend_names() -> list[str]:
    return list(BACKENDS)


def check_name(name: str) -> str:
    """``name`` if it is a registered backend, else a :class:`SpecError` that suggests the close name and
    lists every known backend with why it cannot run here."""
    if name in BACKENDS:
        return name
    known = [n if why is None else f"{n} (unavailable: {why})" for n, why in backend_status().items()]
    raise unknown_name("backend", name, BACKENDS, ", ".join(known))


def load_backend(name: str) -> Backend:
    """The backend object called ``name``, unchecked beyond the name (a :class:`~pyflux_mnist.run.Run`
    checked the rest when it was built)."""
    module, cls = BACKENDS[check_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)()


def get_backend(name: str, recipe: Recipe | None = None) -> Backend:
    """The backend called ``name``; a clear error if it is unknown, cannot run ``recipe`` (said first: no
    installing helps there) or cannot run here."""
    backend = load_backend(name)
    if recipe is not None:
        backend.check_recipe(recipe)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    return backend


def backend_status(recipe: Recipe | None = None) -> dict[str, str | None]:
    """``{name: None if usable else the reason}`` for every registered backend (and for ``recipe``)."""
    status: dict[str, str | None] = {}
    for name in BACKENDS:
        backend = load_backend(name)
        status[name] = backend.unavailable_reason()
        if recipe is not None:
            try:
                backend.check_recipe(recipe)
            except SpecError as e:
                status[name] = str(e)
    return status


def backend_availability() -> dict[str, str]:
    """``{name: "available" | "unavailable: why" | "not checked: why"}``, what ``info`` says; starts
    nothing, so a backend that only its first use can confirm (Flux: juliacall installed, Julia not yet
    started) is "not checked", never "available"."""
    lines: dict[str, str] = {}
    for name, reason in backend_status().items():
        unconfirmed = None if reason is not None else load_backend(name).unconfirmed()
        lines[name] = (
            f"unavailable: {reason}"
            if reason is not None
            else f"not checked: {unconfirmed}"
            if unconfirmed
            else "available"
        )
    return lines


def backend_details() -> dict[str, dict[str, object]]:
    """``{name: details}``: what ``info`` shows about each backend beyond available or not."""
    details: dict[str, dict[str, object]] = {}
    for name in BACKENDS:
        try:
            details[name] = load_backend(name).details()
        except Exception as e:  # one backend's detail must not hide the rest of the report
            details[name] = {"error": str(e)}
    return details


def backend_detail_lines() -> dict[str, str]:
    """``{name: line}`` for the backends that have something to add in ``info``'s text."""
    lines: dict[str, str] = {}
    for name in BACKENDS:
        try:
            line = load_backend(name).details_line()
        except Exception as e:  # one backend's detail must not hide the rest of the report
            line = f"error: {e}"
        if line:
            lines[name] = line
    return lines


def library_versions() -> dict[str, str | None]:
    """``{distribution: installed version or None}`` for every backend's library (imports none of them)."""
    versions: dict[str, str | None] = {}
    for name in BACKENDS:
        dist = load_backend(name).distribution
        if dist is not None:
            try:
                versions[dist] = version(dist)
            except PackageNotFoundError:
                versions[dist] = None
    return versions


__all__ = [
    "BACKENDS",
    "REFERENCE",
    "Backend",
    "Trainer",
    "backend_availability",
    "backend_detail_lines",
    "backend_details",
    "backend_names",
    "backend_status",
    "check_name",
    "get_backend",
    "library_versions",
    "load_backend",
]
