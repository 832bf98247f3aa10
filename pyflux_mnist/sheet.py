"""Find a sheet of paper lying on a desk in a photo: its outline and how far it is turned.

A newcomer's photo of a digit is a sheet on a desk: the desk shows around the sheet, the sheet is turned,
a shadow may fall across it. The sheet is the largest bright, roughly rectangular region with a sharp edge
against a darker background. "Bright" is measured on the *whiteness* of each pixel (its smallest colour
channel), so that a brown or coloured desk is dark even where it is as light as shadowed paper.

Every test must hold, or the picture is treated as having no sheet (a digit filling the frame, light ink
on a dark page, a screenshot) and read as before:

* the region covers 15..97 % of the picture, and the picture is at least 48 px on its short side;
* its holes (ink, or a digit's loop) are at most 30 % of it;
* it is convex (≥ 90 % of its hull) and rectangular (≥ 80 % of its bounding rectangle at the sheet's angle):
  a light digit on a dark page is neither (a loop such as 0 fills ~79 % of its rectangle);
* it is at least 20 grey levels whiter than what lies around it, and that difference is a *step* at its
  edge (18 % of it within 2 % of the picture's size; a gradient of the lighting gives under 10 %).

The angle comes from the sheet's edges (its convex hull, edges lying on the picture's border left out),
as the direction (modulo 90°) that most of the outline's length agrees with, within 4°, averaged. The
digit's own second moments are not used: MNIST's digits are slanted as people write them and were never
deskewed, so a slant is a feature the network has learned, while the sheet's edges say how the *camera*
was turned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raster import box_blur, components, dilate, erode, otsu

MIN_SIDE = 48
AREA = (0.15, 0.97)
MAX_HOLES = 0.30
MIN_SOLIDITY = 0.90
MIN_RECTANGULARITY = 0.80
MIN_CONTRAST = 20.0
EDGE_BAND = 0.02
STEP = 0.18


@dataclass(frozen=True)
class Sheet:
    """A sheet found in a picture: its outline (convex hull) and the angle it is turned by."""

    outline: np.ndarray  # (K, 2) float64 polygon, (x, y) pixel-corner coordinates of the picture searched
    angle: float  # degrees; the sheet's edges point this far clockwise (on screen) from the picture's axes
    paper: float  # median whiteness of the sheet
    desk: float  # median whiteness around it

    def scaled(self, factor: float) -> Sheet:
        """The same sheet in a picture ``factor`` times as large."""
        return Sheet(self.outline * factor, self.angle, self.paper, self.desk)


def whiteness(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` colour or ``(H, W)`` grey → ``(H, W)`` float32: the smallest channel (white paper is
    bright in all three)."""
    a = np.asarray(rgb)
    return (a.min(axis=2) if a.ndim == 3 else a).astype(np.float32)


def find_sheet(f: np.ndarray, rectangularity: float = MIN_RECTANGULARITY) -> Sheet | None:
    """The sheet in a whiteness image ``(H, W)`` 0..255 (a few hundred px is plenty), or None.

    Otsu's threshold separates paper from desk unless a shadow darkens part of the sheet below it, so
    thresholds between the desk's level and Otsu's (and one above, for a light desk) are tried too; the
    most rectangular region that passes every test (``rectangularity`` or more) wins.
    """
    h, w = f.shape
    if min(h, w) < MIN_SIDE or float(np.ptp(f)) < MIN_CONTRAST:
        return None
    sharp = box_blur(np.asarray(f, dtype=np.float32), 1)
    f = box_blur(sharp, max(1, round(0.008 * max(h, w))))  # the desk's grain away
    t = otsu(f)
    below, above = f[f <= t], f[f > t]
    if below.size == 0 or above.size == 0:
        return None
    low, high = float(np.median(below)), float(np.median(above))
    best: tuple[float, Sheet] | None = None
    for level in (t, low + 0.7 * (t - low), low + 0.45 * (t - low), t + 0.5 * (high - t)):
        found = _region(sharp, f > level, rectangularity)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    return best[1] if best is not None else None


def _region(f: np.ndarray, bright: np.ndarray, least: float) -> tuple[float, Sheet] | None:
    """The largest ``bright`` region if it passes as a sheet in ``f``: (its rectangularity, the sheet)."""
    h, w = f.shape
    labels, n = components(bright)
    if n == 0:
        return None
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    region = labels == int(np.argmax(counts))
    if counts.max() < AREA[0] * h * w:
        return None
    # Holes: the parts of the rest that do not reach the picture's border (the ink, a digit's loop).
    rest, _ = components(~region)
    outer = np.unique(np.concatenate([rest[0], rest[-1], rest[:, 0], rest[:, -1]]))
    holes = ~region & ~np.isin(rest, outer)
    filled = region | holes
    area = int(filled.sum())
    if not AREA[0] * h * w <= area <= AREA[1] * h * w or holes.sum() > MAX_HOLES * area:
        return None
    hull = convex_hull(_row_ends(filled))
    if len(hull) < 3:
        return None
    angle = edge_angle(hull, w, h)
    rectangularity = area / max(_rect_area(hull, angle), 1.0)
    if area < MIN_SOLIDITY * polygon_area(hull) or rectangularity < least:
        return None
    paper, desk = float(np.median(f[filled])), float(np.median(f[~filled]))
    if paper - desk < MIN_CONTRAST:
        return None
    r = max(2, round(EDGE_BAND * min(h, w)))
    inner = filled & ~erode(filled, r)
    ring = dilate(filled, r) & ~filled
    if not inner.any() or not ring.any():
        return None
    if float(np.median(f[inner])) - float(np.median(f[ring])) < STEP * (paper - desk):
        return None
    return rectangularity, Sheet(hull, angle, paper, desk)


def _row_ends(mask: np.ndarray) -> np.ndarray:
    """The corners of the first and last set pixel of each row: ``(K, 2)`` (x, y), enough for the hull."""
    rows = np.nonzero(mask.any(axis=1))[0]
    first = mask[rows].argmax(axis=1)
    last = mask.shape[1] - 1 - mask[rows, ::-1].argmax(axis=1)
    xs = np.concatenate([first, first, last + 1, last + 1]).astype(np.float64)
    ys = np.concatenate([rows, rows + 1, rows, rows + 1]).astype(np.float64)
    return np.stack([xs, ys], axis=1)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: ``(N, 2)`` points → ``(K, 2)`` hull, counter-clockwise in (x, y)."""
    pts = np.unique(np.asarray(points, dtype=np.float64), axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return pts

    def half(seq: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def edge_angle(hull: np.ndarray, w: float, h: float) -> float:
    """Degrees in about (-45, 45]: the dominant direction of the hull's edges modulo 90°.

    Edges lying along the picture's border (a sheet running out of the frame) say nothing and are left out.
    """
    a, b = hull, np.roll(hull, -1, axis=0)
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    tol = 1.5
    on_border = np.zeros(len(a), bool)
    for coord, edge in ((0, 0.0), (0, w), (1, 0.0), (1, h)):
        on_border |= (np.abs(a[:, coord] - edge) < tol) & (np.abs(b[:, coord] - edge) < tol)
    weight = np.where(on_border, 0.0, length)
    if weight.sum() <= 0:
        return 0.0
    # Each edge's direction modulo 90°, in (-45, 45]; the direction most of the outline's length agrees
    # with (within 4°) wins, so that a corner cut off by a shadow or the frame does not pull it.
    theta = (np.degrees(np.arctan2(d[:, 1], d[:, 0])) + 45) % 90 - 45
    diff = (theta[:, None] - theta[None, :] + 45) % 90 - 45  # (K, K) signed, modulo 90°
    near = np.abs(diff) <= 4
    best = int(np.argmax((near * weight[None, :]).sum(axis=1)))
    sel = near[best] & (weight > 0)
    return float(theta[best] - np.sum(weight[sel] * diff[best, sel]) / np.sum(weight[sel]))


def rotate_points(points: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate (x, y) points about the origin by ``degrees`` clockwise on screen (y points down)."""
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.asarray(points, dtype=np.float64) @ rot.T


def _rect_area(hull: np.ndarray, angle: float) -> float:
    p = rotate_points(hull, -angle)
    return float(np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
