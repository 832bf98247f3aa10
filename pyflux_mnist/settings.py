"""Every environment variable the package reads or sets, in one place, each with a one-line doc.

``pyflux-mnist info`` lists them with their current values. Modules read a variable through its
:class:`Setting` (``DATA.get()``), never through a bare string, so this list is complete by construction
(a test checks that no other module names an environment variable).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .flags import parse_flag


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name and what it does."""

    name: str
    doc: str

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value exactly as set (a path may have spaces); ``None`` when unset or empty."""
        return (os.environ if environ is None else environ).get(self.name) or None

    def get(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value, stripped; ``None`` when unset or blank."""
        return (self.raw(environ) or "").strip() or None

    def flag(self, environ: Mapping[str, str] | None = None) -> bool:
        """A yes/no variable (unset: no); a value that is neither is refused in one line."""
        return parse_flag(self.name, self.raw(environ) or "")

    def is_no(self, environ: Mapping[str, str] | None = None) -> bool:
        """A switch that is on unless set to no (``PYFLUX_MNIST_JULIA=0``): read by the same parser as
        :meth:`flag`, so ``n`` means no here too, and ``maybe`` is refused in one line."""
        raw = self.raw(environ)
        return raw is not None and not parse_flag(self.name, raw)


# --- the package's own -------------------------------------------------------------------------------
DATA = Setting("PYFLUX_MNIST_DATA", "directory holding the four MNIST IDX files (before the cache)")
MIRRORS = Setting("PYFLUX_MNIST_MIRRORS", "comma-separated base URLs to download MNIST from, in order")
OFFLINE = Setting("PYFLUX_MNIST_OFFLINE", "1/yes: never download (as --offline)")
JULIA = Setting("PYFLUX_MNIST_JULIA", "0: switch the Flux backend off without looking for Julia")
JULIA_THREADS = Setting("PYFLUX_MNIST_JULIA_THREADS", "Julia threads for the Flux backend (default 1)")
BLAS_THREADS = Setting(
    "PYFLUX_MNIST_BLAS_THREADS", "BLAS threads pinned in NumPy and Julia by the Flux backend"
)

# --- juliacall's, which the Flux backend sets before Julia starts unless the user did ----------------
JULIACALL_THREADS = Setting("PYTHON_JULIACALL_THREADS", "juliacall: Julia threads (set from the line above)")
JULIACALL_HANDLE_SIGNALS = Setting(
    "PYTHON_JULIACALL_HANDLE_SIGNALS", "juliacall: let Julia handle signals (set to yes with >1 thread)"
)
JULIACALL_EXE = Setting("PYTHON_JULIACALL_EXE", "juliacall: an installed julia (offline: with the next line)")
JULIACALL_PROJECT = Setting("PYTHON_JULIACALL_PROJECT", "juliacall: a Julia project that already has Flux")
JULIAPKG_EXE = Setting("PYTHON_JULIAPKG_EXE", "juliapkg: an installed Julia to use, not a download")
JULIAPKG_OFFLINE = Setting("PYTHON_JULIAPKG_OFFLINE", "juliapkg: yes to never download Julia packages")

# --- others' that the package reads or sets ------------------------------------------------------------
XDG_CACHE_HOME = Setting("XDG_CACHE_HOME", "the cache root (MNIST goes to its pyflux-mnist/ folder)")
PYTHONPATH = Setting("PYTHONPATH", "Python's module path (bench puts this package first in each worker's)")
#: Thread counts for BLAS/OpenMP; ``bench`` sets all of them in each worker before any library loads.
THREAD_VARS = tuple(
    Setting(name, "threads for BLAS/OpenMP (bench sets it in each worker)")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
)
#: OpenBLAS settings that change which kernel runs; bench reports them, never changes them.
OPENBLAS_VARS = tuple(
    Setting(name, "OpenBLAS kernel choice (bench reports it)")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE")
)

SETTINGS: tuple[Setting, ...] = (
    DATA,
    MIRRORS,
    OFFLINE,
    JULIA,
    JULIA_THREADS,
    BLAS_THREADS,
    JULIACALL_THREADS,
    JULIACALL_HANDLE_SIGNALS,
    JULIACALL_EXE,
    JULIACALL_PROJECT,
    JULIAPKG_EXE,
    JULIAPKG_OFFLINE,
    XDG_CACHE_HOME,
    PYTHONPATH,
    *THREAD_VARS,
    *OPENBLAS_VARS,
)


def current() -> dict[str, str | None]:
    """``{name: value or None}`` for every setting, in :data:`SETTINGS` order (what ``info`` lists)."""
    return {s.name: s.get() for s in SETTINGS}
