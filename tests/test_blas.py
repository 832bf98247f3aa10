"""``pyflux_mnist.blas``: NumPy's BLAS found, pinned and restored through threadpoolctl."""

from __future__ import annotations

import numpy as np

from pyflux_mnist.blas import blas_libraries, blas_threads, one_blas_thread, set_blas_threads, thread_pools


def test_numpys_blas_is_found_and_described() -> None:
    libs = blas_libraries()
    assert libs, f"no BLAS found among {thread_pools()}"
    assert all(lib["user_api"] == "blas" and lib["num_threads"] >= 1 for lib in libs)
    assert blas_threads() == min(lib["num_threads"] for lib in libs)


def test_pinning_applies_inside_the_block_and_is_undone_after() -> None:
    before = blas_threads()
    with one_blas_thread():
        assert blas_threads() == 1
        a = np.ones((64, 64), np.float32)
        assert (a @ a)[0, 0] == 64  # products still work single-threaded
    assert blas_threads() == before
    set_blas_threads(1)
    try:
        assert blas_threads() == 1
    finally:
        set_blas_threads(before)
    assert blas_threads() == before
