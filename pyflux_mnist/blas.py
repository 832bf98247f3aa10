"""NumPy's BLAS: how many threads it runs, pinning it to one for a while, and what it is (for reports).

All through threadpoolctl, which finds the BLAS NumPy loaded (OpenBLAS, MKL, BLIS, Accelerate) and talks
to it directly; environment variables only act before the library loads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from threadpoolctl import ThreadpoolController, threadpool_info


def blas_controller() -> ThreadpoolController:
    """The BLAS libraries loaded now. Finding them takes ~0.5 ms: code that pins threads at every step
    keeps one and calls ``.limit(limits=1)`` on it."""
    return ThreadpoolController().select(user_api="blas")


def blas_threads(controller: ThreadpoolController | None = None) -> int:
    """The threads NumPy's BLAS runs a product with now (the smallest count if several BLAS are loaded);
    ``controller``: one from :func:`blas_controller` already at hand."""
    counts = [lib.num_threads for lib in (controller or blas_controller()).lib_controllers]
    return min(counts) if counts else 1


def set_blas_threads(n: int) -> None:
    """Run NumPy's BLAS products with ``n`` threads from now on."""
    blas_controller().limit(limits=n)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run NumPy's BLAS single-threaded inside the block; the previous counts come back afterwards."""
    with blas_controller().limit(limits=1):
        yield


def thread_pools() -> list[dict[str, Any]]:
    """Every native thread pool loaded in this process (BLAS, OpenMP): API, library, version, kernel
    (``architecture``), threads. For reports."""
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer", "num_threads")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


def blas_libraries() -> list[dict[str, Any]]:
    """The BLAS part of :func:`thread_pools`."""
    return [pool for pool in thread_pools() if pool["user_api"] == "blas"]
