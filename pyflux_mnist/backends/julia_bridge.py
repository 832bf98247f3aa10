"""The one door to Julia: starts juliacall lazily, loads ``julia/PyFluxMNIST.jl`` once, converts arrays.

In the spirit of PySR's ``julia_import.py``. Importing this module is cheap and never starts Julia; the first
:func:`load` does, and everything Julia-related must go through it, because juliacall reads its settings
(threads, signal handling) only once, at its own first import:

* Julia gets **1 thread** unless asked (``PYFLUX_MNIST_JULIA_THREADS=n`` or ``PYTHON_JULIACALL_THREADS``);
  with more than one, ``PYTHON_JULIACALL_HANDLE_SIGNALS=yes`` is set too, as juliacall's documentation
  asks (Julia's GC uses signals; the price is that Ctrl-C no longer raises ``KeyboardInterrupt``).
* juliacall is imported **before torch**: PythonCall's FAQ reports heap corruption the other way round, and
  we warn when torch was imported first.
* BLAS threads are pinned on both sides to the same number (``PYFLUX_MNIST_BLAS_THREADS=n``, else Julia's
  follows NumPy's), so timings compare like with like.
* ``PYFLUX_MNIST_JULIA=0`` switches the Flux backend off without looking for Julia at all.

Arrays: ``X`` arrives as ``(784, N)`` float32 Fortran-ordered (the ``.T`` of a C ``(N, 784)`` buffer), which
is Julia's column-major layout, so juliacall passes it as a zero-copy ``PyArray``. Julia copies it once, per
trainer, into a ``Matrix{Float32}`` (a ``PyArray`` is not a ``DenseArray``, so ``W * X`` on it would not call
BLAS). Everything Julia returns is copied into NumPy (:func:`to_numpy`), never kept as a view of Julia memory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .. import settings
from ..blas import blas_threads, set_blas_threads
from ..errors import BackendUnavailable, PyfluxError, first_line, unexpected_line

JULIA_SWITCH = settings.JULIA.name  # "0" turns the Flux backend off
THREADS_ENV = settings.JULIA_THREADS.name
BLAS_ENV = settings.BLAS_THREADS.name
JULIACALL_THREADS = settings.JULIACALL_THREADS.name

INSTALL_HINT = (
    "the Flux backend needs Julia: pip install 'pyflux-mnist[julia]' (first use downloads Julia and Flux)"
)
SWITCHED_OFF = f"the Flux backend is switched off ({JULIA_SWITCH}=0)"


class JuliaRuntimeError(PyfluxError):
    """Julia raised an error while training or predicting; the message is the first line of its showerror."""


# --- availability (cheap: never imports juliacall) ----------------------------------------------------


_lock = threading.RLock()
_julia: Julia | None = None
_failure: str | None = None  # why loading failed in this process (juliacall cannot be re-initialised)


def unavailable_reason() -> str | None:
    """``None`` if the Flux backend may be tried, else one line saying why not. Never starts Julia."""
    if settings.JULIA.is_no():
        return SWITCHED_OFF
    if _failure is not None:
        return _failure
    if _julia is None and importlib.util.find_spec("juliacall") is None:
        return INSTALL_HINT
    return None


def setup_failure_message(error: BaseException) -> str:
    """One line for "juliacall is installed but could not give us Julia + Flux" (offline, no Julia...).

    It stands on its own (a pip user has no ``docs/``): the commands of the offline fix that works on a
    fresh environment, juliacall's own EXE + PROJECT pair, which bypasses juliapkg.
    ``PYTHON_JULIAPKG_OFFLINE=yes`` does not: juliapkg then skips writing the project and adding packages
    (pyjuliapkg 0.1.28 ``deps.py`` l.558, ``if not STATE["offline"]:`` around all of it), so a new venv's
    project stays empty and ``using PythonCall`` fails.
    """
    detail = first_line(error)
    return (
        f"juliacall could not set up Julia and Flux ({detail}); offline, make a Julia project with Flux and "
        f"the PythonCall your juliacall pins: julia --project=DIR -e '{offline_pkg_add()}', then set "
        f"{settings.JULIACALL_EXE.name}=/path/to/bin/julia and {settings.JULIACALL_PROJECT.name}=DIR "
        "(absolute) together; or start the backend once with internet access"
    )


def offline_pkg_add(pythoncall: str | None = None) -> str:
    """The Julia code that adds Flux and juliacall's PythonCall to a project, offline recipe's first step.

    One ``Vector{PackageSpec}``: ``["Flux", PackageSpec(...)]`` would be a ``Vector{Any}``, for which Pkg has
    no ``add`` method (Pkg release-1.10 ``src/API.jl`` l.144-148 and l.179: ``add`` takes a
    ``Vector{<:AbstractString}``, a ``Vector{PackageSpec}`` or a ``Vector{<:NamedTuple}``).
    """
    version = pythoncall or pinned_pythoncall()
    spec = f'name="PythonCall", version="{version}"' if version else 'name="PythonCall"'
    return f'using Pkg; Pkg.add([Pkg.PackageSpec(name="Flux"), Pkg.PackageSpec({spec})])'


def pinned_pythoncall() -> str | None:
    """``0.9.37``: the PythonCall version the installed juliacall requires (``"=0.9.37"`` in its
    ``juliapkg.json``, read without importing juliacall, which would start Julia); ``None`` if unknown."""

    spec = importlib.util.find_spec("juliacall")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            deps = json.loads((Path(folder) / "juliapkg.json").read_text())
            return str(deps["packages"]["PythonCall"]["version"]).removeprefix("=")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def translate_julia_error(error: BaseException, showerror: Any = None) -> JuliaRuntimeError:
    """A one-line :class:`JuliaRuntimeError` from a ``juliacall.JuliaError``.

    ``str(JuliaError)`` is Julia's ``showerror`` *with* the backtrace; the first line is the message itself.
    ``showerror(exception) -> str``, when given, renders it without computing the backtrace text. Callers
    raise the result ``from error``, so ``--verbose`` (which prints the chained traceback) still shows Julia's
    full trace.
    """
    text = None
    exception = getattr(error, "exception", None)
    if showerror is not None and exception is not None:
        try:
            text = str(showerror(exception))
        except Exception:  # rendering the error must never hide the error
            text = None
    if not text:
        text = str(error)
    line = first_line(text).removeprefix("Julia: ")  # PythonCall's own prefix on a TypeError
    return JuliaRuntimeError(f"Julia: {line or type(error).__name__}")


# --- environment, set before the first `import juliacall` ----------------------------------------------


def configure_environment(
    environ: MutableMapping[str, str] | None = None, threads: int | str | None = None
) -> dict[str, str]:
    """Set juliacall's options in ``environ`` (default ``os.environ``) unless the user set them already.

    Returns the juliacall variables as they now stand. Only effective before juliacall is imported.
    """
    env = os.environ if environ is None else environ  # written here; read through the settings
    if threads is None:
        threads = settings.JULIA_THREADS.raw(env)
    if threads is not None and settings.JULIACALL_THREADS.raw(env) is None:
        env[JULIACALL_THREADS] = str(threads)
    env.setdefault(JULIACALL_THREADS, "1")
    n = settings.JULIACALL_THREADS.get(env) or ""
    if n == "auto" or (n.isdigit() and int(n) > 1):
        env.setdefault(settings.JULIACALL_HANDLE_SIGNALS.name, "yes")
    return {k: v for k, v in env.items() if k.startswith("PYTHON_JULIACALL_")}


def _warn_import_order() -> None:
    if "juliacall" in sys.modules:
        warnings.warn(
            "juliacall was imported before pyflux_mnist could configure it: its thread and signal settings "
            "are whatever that first import used",
            stacklevel=3,
        )
    elif "torch" in sys.modules:
        warnings.warn(
            "torch was imported before juliacall, which PythonCall reports can corrupt the heap; start the "
            "Flux backend (or import juliacall) before importing torch",
            stacklevel=3,
        )


# --- loading -------------------------------------------------------------------------------------------


def module_path() -> Path:
    """``PyFluxMNIST.jl``: package data in a wheel (``pyflux_mnist/julia`` links to the top-level ``julia/``
    in a checkout); a checkout whose symlink was not created (e.g. Windows) falls back to ``julia/``."""
    packaged = Path(str(resources.files("pyflux_mnist") / "julia" / "PyFluxMNIST.jl"))
    if packaged.is_file():
        return packaged
    source = Path(__file__).resolve().parents[2] / "julia" / "PyFluxMNIST.jl"
    if source.is_file():
        return source
    raise BackendUnavailable(f"PyFluxMNIST.jl is missing from the installation (looked for {packaged})")


@dataclass
class Julia:
    """A started Julia with our module loaded: ``call`` runs one of its functions, translating errors."""

    juliacall: Any
    host: Any  # the juliacall.newmodule namespace the file was included into
    module: Any  # PyFluxMNIST
    #: Seconds of the first load in this process: ``julia_start`` (``import juliacall``: Julia, juliapkg's
    #: set-up on a first run, PythonCall) and ``using_flux`` (including PyFluxMNIST.jl).
    timings: dict[str, float] = field(default_factory=dict)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``PyFluxMNIST.<name>(args...; kwargs...)`` (juliacall spells ``f!`` as ``f_b``)."""
        try:
            return getattr(self.module, name)(*args, **kwargs)
        except self.juliacall.JuliaError as e:
            raise translate_julia_error(e, self._showerror) from e
        except TypeError as e:
            # A MethodError on the called function itself (wrong argument types or count) reaches Python as a
            # TypeError "Julia: " + showerror (PythonCall.jl 0.9.34 src/JlWrap/any.jl l.56-57, pyjlany_call's
            # error type; src/JlWrap/base.jl l.123, errset). Any other TypeError is Python's own: re-raised.
            if not str(e).startswith("Julia: "):
                raise
            raise translate_julia_error(e) from e

    def _showerror(self, exception: Any) -> str:
        return str(self.juliacall.Main.sprint(self.juliacall.Main.showerror, exception))

    def versions(self) -> dict[str, str]:
        """What really runs: Julia, Flux, Optimisers (Flux's, as loaded), PythonCall, and Julia's threads.

        PythonCall is read in ``Main``, where juliacall loads it (juliacall 0.9.37 ``__init__.py`` l.293,
        ``using PythonCall``); the rest from ``PyFluxMNIST.versions()``.
        """
        julia, flux, optimisers, threads = self.call("versions")
        try:
            pythoncall = str(self.juliacall.Main.seval("string(pkgversion(PythonCall))"))
        except Exception as e:  # a report must not fail over one version string
            pythoncall = f"? ({unexpected_line(e)})"
        return {
            "julia": str(julia),
            "flux": str(flux),
            "optimisers": str(optimisers),
            "pythoncall": pythoncall,
            "threads": str(threads),
        }

    def set_blas_threads(self, n: int) -> None:
        self.host.seval("import LinearAlgebra")
        self.host.seval("LinearAlgebra.BLAS.set_num_threads")(int(n))

    def blas_threads(self) -> int:
        self.host.seval("import LinearAlgebra")
        return int(self.host.seval("LinearAlgebra.BLAS.get_num_threads()"))


def load() -> Julia:
    """Start Julia (once per process) and load ``PyFluxMNIST.jl``; :class:`BackendUnavailable` if we can't."""
    global _julia, _failure
    with _lock:
        if _julia is not None:
            return _julia
        reason = unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(reason)
        _warn_import_order()
        configure_environment()
        t0 = time.perf_counter()
        try:
            import juliacall  # starts Julia (seconds to minutes): only here, under the lock, once
        except ImportError:
            raise BackendUnavailable(INSTALL_HINT) from None
        except Exception as e:  # juliapkg could not find/download Julia or resolve Flux; PythonCall failed
            _failure = setup_failure_message(e)
            raise BackendUnavailable(_failure) from e
        t1 = time.perf_counter()
        try:
            host = juliacall.newmodule("PyFluxMNISTHost")
            module = host.include(str(module_path()))  # the path is an argument, never pasted into code
        except juliacall.JuliaError as e:
            _failure = setup_failure_message(e)
            raise BackendUnavailable(_failure) from e
        timings = {"julia_start": t1 - t0, "using_flux": time.perf_counter() - t1}
        julia = Julia(juliacall, host, module, timings)
        _pin_blas(julia)
        _julia = julia
        return julia


def _pin_blas(julia: Julia) -> None:
    """Same BLAS thread count on both sides: ``$PYFLUX_MNIST_BLAS_THREADS``, else NumPy's current one."""
    wanted = settings.BLAS_THREADS.get()
    try:
        if wanted:
            pin_blas_threads(int(wanted), julia)
        else:
            julia.set_blas_threads(blas_threads())
    except Exception as e:  # never fail training over a benchmark nicety
        warnings.warn(f"could not pin BLAS threads: {first_line(e)}", stacklevel=3)


def pin_blas_threads(n: int, julia: Julia | None = None) -> None:
    """Use ``n`` BLAS threads in NumPy and in Julia, from now on."""
    if n < 1:
        raise PyfluxError(f"BLAS threads must be at least 1, got {n}")
    set_blas_threads(n)
    (julia or load()).set_blas_threads(n)


def julia_status(start: bool = False) -> dict[str, Any]:
    """What ``pyflux-mnist info`` shows: versions when available, else the reason. Starts Julia only if
    ``start`` (or if it is already running)."""
    status: dict[str, Any] = {
        "available": False,
        "reason": unavailable_reason(),
        "juliacall": _dist_version("juliacall"),
        "julia": None,
        "flux": None,
        "optimisers": None,
        "pythoncall": None,
        "started": _julia is not None,
        "julia_threads": settings.JULIACALL_THREADS.get(),
    }
    if status["reason"] is None and (start or _julia is not None):
        try:
            julia = load()
            found = julia.versions()
            status["julia_threads"] = found.pop("threads")
            status.update(found)
            status["blas_threads"] = julia.blas_threads()
            status["started"] = True
        except PyfluxError as e:
            status["reason"] = str(e)
        except Exception as e:  # a JuliaError (e.g. reading BLAS threads) is a finding, not a crash
            status["reason"] = f"Julia started but failed: {unexpected_line(e)}"
    status["available"] = status["reason"] is None
    return status


def unconfirmed() -> str | None:
    """Why the Flux backend, though not known to be unavailable, is not known to work either: juliacall is
    installed but Julia has not started in this process (it may still be missing, or offline). ``None``
    once Julia runs here, or when :func:`unavailable_reason` already says no. Never starts Julia."""
    if _julia is not None or unavailable_reason() is not None:
        return None
    return (
        "juliacall is installed, Julia and Flux not checked yet (the first use sets them up; "
        "`pyflux-mnist doctor --backend flux` checks)"
    )


def required(environ: Mapping[str, str] | None = None) -> bool:
    """``PYFLUX_MNIST_JULIA=1`` (or yes, true, on), as in CI: the Flux backend must work there, so the
    Julia tests fail instead of skipping when it cannot. Parsed by the package's own yes/no parser."""
    return settings.JULIA.flag(environ)


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --- arrays in and out ---------------------------------------------------------------------------------


def julia_matrix(A: np.ndarray, rows: int | None = None, what: str = "X") -> np.ndarray:
    """``A`` as Julia wants it: 2-D float32, Fortran-ordered. The usual input (the ``.T`` of a C buffer) is
    returned as is, no copy; anything else is copied once here."""
    A = np.asarray(A)
    if A.ndim != 2 or (rows is not None and A.shape[0] != rows):
        want = f"({rows}, N)" if rows is not None else "2-D"
        raise PyfluxError(f"{what} must be a {want} array (features × samples), got shape {A.shape}")
    if A.dtype == np.float32 and A.flags.f_contiguous:
        return A
    return np.asfortranarray(A, dtype=np.float32)


def julia_params(params: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """``(W1, b1, ...)`` as float32 arrays; a Python tuple becomes a Julia ``Tuple`` of ``PyArray`` views,
    which Julia copies into its own ``Matrix{Float32}``/``Vector{Float32}`` when it builds the layers."""
    return tuple(np.ascontiguousarray(p, dtype=np.float32) for p in params)


def encode_batches(batches: Sequence[np.ndarray | None], n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Batches as two int64 arrays for one Julia call: the 0-based indices of all batches, concatenated,
    and one size per batch (``-1``: the full batch). Julia adds the 1 and checks the range again."""
    sizes = np.empty(len(batches), dtype=np.int64)
    parts: list[np.ndarray] = []
    for k, batch in enumerate(batches):
        if batch is None:
            sizes[k] = -1
            continue
        b = np.asarray(batch)
        if b.ndim != 1 or b.size == 0 or not np.issubdtype(b.dtype, np.integer):
            raise PyfluxError(f"batch {k} must be a non-empty 1-D array of sample indices, got {b!r:.60}")
        if b.min() < 0 or b.max() >= n_samples:
            raise PyfluxError(f"batch {k} has sample indices outside 0..{n_samples - 1}")
        sizes[k] = b.size
        parts.append(b.astype(np.int64, copy=False))
    indices = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return indices, sizes


def to_numpy(value: Any, dtype: Any = np.float32) -> np.ndarray:
    """A C-ordered NumPy copy of a Julia array (``np.asarray`` alone would be a live view of Julia memory)."""
    return np.array(value, dtype=dtype, order="C", copy=True)
