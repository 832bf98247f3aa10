"""The bounds ``bench`` sets a training step against, and how the sgemm worker measures them.

Three walls, each measured in the same run as the backends:

* **roofline**: the step's matrix-product FLOPs at the rate of a large square sgemm (the best any code
  could do those products at on this BLAS). Kept as it was, so earlier tables stay comparable.
* **products on the model's own shapes**: the same BLAS timing exactly the products one step needs
  (per layer ``W @ X``, ``X @ dZᵀ`` and, past the first layer, ``Wᵀ @ dZ``) at the recipe's batch, in the
  faster of two arrangements: one call on BLAS's own threads, or the batch split over as many Python
  threads running one BLAS thread each (what the NumPy trainer does with a full batch). Thin products
  (32 outputs) run well below the square rate, and this is the wall they really meet.
* **memory**: the bytes one step must move (the batch read once; weights read by the forward pass, the
  gradient written, and the optimiser reading and writing parameters and state once) at the copy
  bandwidth of a working set of that size, so a step whose arrays fit in the caches is held to the
  caches' rate, and one that streams the whole data set to main memory's.

``bound`` is the larger of the last two: the time below which no implementation of the step can go with
this BLAS and memory system; the larger one names the wall.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from .backends.base import SLOTS
from .blas import blas_controller
from .spec import Recipe

F32 = 4  # bytes
#: Smallest and largest working set the bandwidth is measured with (a copy of half of it into the other half).
MIN_COPY_BYTES, MAX_COPY_BYTES = 1 << 20, 512 << 20
#: A batch is split over threads only when each share keeps at least this many samples.
MIN_SPLIT = 256


def products(recipe: Recipe, batch: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """The matrix products of one training step: ``(name, a_shape, b_shape)``, ``a @ b``."""
    out: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(recipe.model.sizes), start=1):
        out.append((f"W{layer}·X", (n_out, n_in), (n_in, batch)))
        out.append((f"X·dZ{layer}ᵀ", (n_in, batch), (batch, n_out)))
        if layer > 1:
            out.append((f"W{layer}ᵀ·dZ{layer}", (n_in, n_out), (n_out, batch)))
    return out


def n_parameters(recipe: Recipe) -> int:
    m = recipe.model
    return sum(i * o + (o if m.bias else 0) for i, o in itertools.pairwise(m.sizes))


def bytes_per_step(recipe: Recipe, batch: int) -> int:
    """Bytes one step must move at least: the batch (inputs and targets) read once; the weights read by the
    forward pass; the gradient written; the optimiser reading parameters, gradient and state and writing
    parameters and state (Adam: 2 slots, RMSprop: 1, Descent: none)."""
    sizes = recipe.model.sizes
    slots = len(SLOTS.get(recipe.optimizer.name, ()))
    data = batch * (sizes[0] + sizes[-1])
    params = n_parameters(recipe) * (1 + 1 + (3 + 2 * slots))
    return F32 * (data + params)


# --- measured in the sgemm worker (NumPy's BLAS, the run's thread count) -----------------------------


def _best(f: Callable[[], object], repeat: int) -> float:
    f()  # warm-up: pages touched, thread pools started
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


class BoundProbe:
    """The arrays for one recipe's bound, allocated once and timed at every round."""

    def __init__(self, recipe: Recipe, batch: int, threads: int) -> None:
        rng = np.random.default_rng(0)
        self.threads = threads
        self.batch = batch
        self.products = []
        arrays: dict[tuple[int, int], Any] = {}
        for name, a, b in products(recipe, batch):
            for shape in (a, b):
                if shape not in arrays:
                    arrays[shape] = rng.random(shape, dtype=np.float32) - np.float32(0.5)
            out = np.empty((a[0], b[1]), np.float32)
            self.products.append((name, arrays[a], arrays[b], out, 2.0 * a[0] * a[1] * b[1]))
        self.bytes = bytes_per_step(recipe, batch)
        half = min(max(self.bytes, MIN_COPY_BYTES), MAX_COPY_BYTES) // 2 // F32
        self.src = rng.random(half, dtype=np.float32)
        self.dst = np.empty_like(self.src)
        self._pool = ThreadPoolExecutor(max(threads - 1, 1), "pyflux-bound")

    def _in_threads(self, jobs: list[Callable[[], object]]) -> None:
        others = [self._pool.submit(job) for job in jobs[1:]]
        jobs[0]()
        for future in others:
            future.result()

    def _split(self, a, b, out, inner: bool) -> Callable[[], None]:
        """The product with the batch split over ``threads`` Python threads (one BLAS thread each); the
        batch is ``b``'s columns, or the inner dimension (a weight gradient: each share writes its own
        partial sum, whose addition is not timed: it is 1/batch of the work)."""
        t = self.threads
        n = a.shape[1] if inner else b.shape[1]
        cuts = [(i * n // t, (i + 1) * n // t) for i in range(t)]
        jobs: list[Callable[[], object]]
        if inner:
            parts = [np.empty_like(out) for _ in cuts]
            jobs = [
                partial(np.matmul, a[:, lo:hi], b[lo:hi], out=p)
                for (lo, hi), p in zip(cuts, parts, strict=True)
            ]
        else:
            jobs = [partial(np.matmul, a, b[:, lo:hi], out=out[:, lo:hi]) for lo, hi in cuts]
        return lambda: self._in_threads(jobs)

    def measure(self) -> dict[str, Any]:

        blas = blas_controller()
        rows = []
        for name, a, b, out, flop in self.products:
            seconds = _best(partial(np.matmul, a, b, out=out), 3)
            arrangement = "one call"
            if self.threads > 1 and self.batch >= MIN_SPLIT * self.threads:
                with blas.limit(limits=1):
                    split = _best(self._split(a, b, out, inner=name.startswith("X·")), 3)
                if split < seconds:
                    seconds, arrangement = split, "split"
            rows.append(
                {"product": name, "seconds": seconds, "gflops": flop / seconds / 1e9, "how": arrangement}
            )
        cuts = [
            (i * self.src.size // self.threads, (i + 1) * self.src.size // self.threads)
            for i in range(self.threads)
        ]
        copy: list[Callable[[], object]] = [
            partial(np.copyto, self.dst[lo:hi], self.src[lo:hi]) for lo, hi in cuts
        ]
        copy_s = _best(lambda: self._in_threads(copy), 5)
        return {
            "products": rows,
            "products_seconds": sum(r["seconds"] for r in rows),
            "bandwidth_gbs": 2 * self.src.nbytes / copy_s / 1e9,
            "copy_bytes": 2 * self.src.nbytes,
        }


# --- combining the rounds (in the parent) -------------------------------------------------------------


def bound_summary(recipe: Recipe, batch: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The bound from every round's measurement: each product's best time and the best bandwidth of the
    run (the same reasoning as the roofline's best sgemm: a slow round measures the load, not the wall)."""
    if not rounds:
        return {}
    names = [r["product"] for r in rounds[0]["products"]]
    best = [min((rd["products"][i] for rd in rounds), key=lambda r: r["seconds"]) for i in range(len(names))]
    flop = sum(2.0 * a[0] * a[1] * b[1] for _, a, b in products(recipe, batch))
    products_ms = sum(r["seconds"] for r in best) * 1e3
    bandwidth = max(rd["bandwidth_gbs"] for rd in rounds)
    moved = bytes_per_step(recipe, batch)
    memory_ms = moved / bandwidth / 1e6
    wall = "products" if products_ms >= memory_ms else "memory"
    return {
        "products": best,
        "products_ms": products_ms,
        "products_gflops": flop / products_ms / 1e6,
        "bytes_per_step": moved,
        "bandwidth_gbs": bandwidth,
        "copy_bytes": rounds[0]["copy_bytes"],
        "memory_ms": memory_ms,
        "ms_per_step": max(products_ms, memory_ms),
        "wall": wall,
    }
