"""Small raster tools in NumPy alone: Otsu's threshold, box blurs, connected components, min/max filters.

Shared by the digit pipeline (:mod:`.photo`) and the sheet finder (:mod:`.sheet`); no SciPy needed.
"""

from __future__ import annotations

import numpy as np


def otsu(v: np.ndarray) -> float:
    """Otsu's threshold of the values ``v``; for no values, or all equal, their maximum (nothing above)."""
    if v.size == 0:
        return 0.0
    top = float(v.max())
    if top <= float(v.min()):
        return top
    hist, edges = np.histogram(v, bins=256, range=(0, top))
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m = np.cumsum(p * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m[-1] * w0 - m) ** 2 / (w0 * (1 - w0))
    if not np.isfinite(between).any():
        return top
    return float(centres[int(np.nanargmax(np.where(np.isfinite(between), between, -1.0)))])


def box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)² window (edges replicated), by cumulative sums along each axis."""
    for axis in (0, 1):
        p = np.pad(a, [(r + 1, r) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge")
        c = np.cumsum(p, axis=axis, dtype=np.float64)
        n = a.shape[axis]
        a = (
            np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
            - np.take(c, np.arange(0, n), axis=axis)
        ) / (2 * r + 1)
    return a.astype(np.float32)


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected component labels (0 = background) by a union-find over the runs of each row."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # exclusive; same row order as starts
    n = len(starts)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(h + 1))
    for r in range(1, h):
        a0, a1 = row_first[r - 1], row_first[r]
        b1 = row_first[r + 1]
        j = a0
        for i in range(a1, b1):
            s, e = starts[i], ends[i]
            while j < a1 and ends[j] < s:  # runs above ending before this one can touch it diagonally
                j += 1
            k = j
            while k < a1 and starts[k] <= e:
                ri, rk = find(i), find(k)
                if ri != rk:
                    parent[max(ri, rk)] = min(ri, rk)
                k += 1
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    uniq, lab = np.unique(roots, return_inverse=True)
    labels = np.zeros((h, w), np.int32)
    for i in range(n):
        labels[rows[i], starts[i] : ends[i]] = lab[i] + 1
    return labels, len(uniq)


def max_filter(a: np.ndarray, r: int) -> np.ndarray:
    """Maximum over a (2r+1)² square window (separable; edges replicated)."""
    return _rank(_rank(a, r, 0, np.maximum), r, 1, np.maximum)


def min_filter(a: np.ndarray, r: int) -> np.ndarray:
    """Minimum over a (2r+1)² square window (separable; edges replicated)."""
    return _rank(_rank(a, r, 0, np.minimum), r, 1, np.minimum)


def _rank(a: np.ndarray, r: int, axis: int, op: np.ufunc) -> np.ndarray:
    if r <= 0:
        return a
    n = a.shape[axis]
    p = np.pad(a, [(r, r) if ax == axis else (0, 0) for ax in range(a.ndim)], mode="edge")
    out = np.take(p, np.arange(0, n), axis=axis)
    for k in range(1, 2 * r + 1):
        out = op(out, np.take(p, np.arange(k, k + n), axis=axis))
    return out


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Boolean erosion by a (2r+1)² square (pixels beyond the edge count as set)."""
    return min_filter(mask.astype(np.uint8), r).astype(bool)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Boolean dilation by a (2r+1)² square."""
    return max_filter(mask.astype(np.uint8), r).astype(bool)
