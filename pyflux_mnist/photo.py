"""Turn anyone's picture of a digit into an MNIST digit, the way MNIST itself was made.

MNIST's digits are white ink on black, cropped to the ink, scaled so the longest side is 20 px (grey edges
from anti-aliasing), pasted into 28×28 and shifted so the intensity-weighted centre of mass sits at row 14,
column 14 (0-based; in MNIST it is 14.00 ± 0.29, 14.01 ± 0.29). People's photos are dark ink on light
paper, any size, colour and position, with shadows, texture and JPEG noise. :func:`mnistify` undoes that:

1. **Grey** (:func:`load_grey`): EXIF orientation applied; palette, 16-bit, float and colour images
   brought to 0..255 grey (colour by luminance, or by the colour axis with the most contrast when the ink
   and the paper differ in hue more than in brightness); transparency composited over a background that
   contrasts with the ink.
2. **Polarity**: the paper is the border's median; when the image reaches further below it than above,
   the ink is dark on light paper and the image is inverted.
3. **Lighting**: a quadratic surface fitted robustly to the background (ink pixels trimmed) is
   subtracted, which removes shadows and gradients.
4. **Texture and noise**: grainy pictures are smoothed a little (about 1 % of their size), pixels below 4
   robust noise sigmas are zeroed and the ink level (90th percentile of the pixels above Otsu's
   threshold) is stretched to 255, keeping grey levels in between.
5. **Specks**: ink components with less than 5 % of the largest component's ink and more than 15 % of
   the digit's size away from it are dropped, so a speck cannot stretch the bounding box.
6. **Stroke width**: a stroke width far outside MNIST's range (relative to the digit's size; MNIST's
   1st..99th percentile is 0.068..0.230 of the longest side) is dilated or eroded to MNIST's median, 0.125.
7. **Crop, scale, centre**: crop to the ink's bounding box, scale the longest side to 20 px (Lanczos), paste
   into 28×28 and shift by the rounded offset of the centre of mass from (14, 14), as MNIST did.

An MNIST digit goes through unchanged in almost every case (measured in ``docs/images.md``).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .userpaths import os_error_line

#: Refuse images with more pixels than this before decoding them (decompression bombs).
MAX_PIXELS = 40_000_000
#: Images are reduced to at most this many pixels on the longest side before any processing.
WORK_SIDE = 640
#: MNIST's geometry.
BOX = 20
SIZE = 28
CENTRE = 14.0
#: Stroke width / longest side of the digit, on MNIST's training set (ink > 127.5 at 20 px).
STROKE_RANGE = (0.068, 0.230)  # 1st and 99th percentile
STROKE_TARGET = 0.125  # median
#: Components with less ink than this fraction of the largest component's are treated as specks.
SPECK_FRACTION = 0.05
#: ... unless they lie within this fraction of the digit's size from its bounding box.
SPECK_MARGIN = 0.15

PathOrImage = "str | os.PathLike[str] | Image.Image | np.ndarray"


# --- reading -----------------------------------------------------------------------------------------


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open a file Pillow can read, refusing missing, empty, unreadable or absurdly large ones."""
    p = Path(path)
    if p.is_dir():
        raise ImageError(f"{p} is a directory, not an image")
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except OSError as e:
        raise ImageError(f"{p}: cannot read it ({e.strerror or e})") from None
    if size == 0:
        raise ImageError(f"{p} is empty (0 bytes)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"{p}: cannot read it ({e.strerror or e})") from None
    img = _open(io.BytesIO(data), str(p))
    return img


def _open(fp: Any, name: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
            _check_size(img, name)
            img.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name} is too large to be a reasonable image (decompression bomb?)") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image Pillow can read") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ImageError(f"{name} is damaged or truncated ({e})") from None
    return img


def _check_size(img: Image.Image, name: str) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{name} is too large: {w}x{h} = {w * h} pixels; the limit is {MAX_PIXELS} (decompression bomb?)"
        )
    if w == 0 or h == 0:
        raise ImageError(f"{name} has no pixels ({w}x{h})")


def load_grey(src: PathOrImage, name: str | None = None) -> np.ndarray:  # type: ignore[valid-type]
    """Any picture → ``(H, W)`` float32 grey in 0..255 (not inverted, not resized beyond WORK_SIDE)."""
    if isinstance(src, np.ndarray):
        return _array_grey(src, name or "array")
    if isinstance(src, Image.Image):
        img, name = src, name or "image"
        _check_size(img, name)
    else:
        name = name or str(src)
        img = open_image(src)
    with contextlib.suppress(Exception):  # a broken EXIF block must not stop us: use the pixels as stored
        img = ImageOps.exif_transpose(img) or img
    grey = _image_grey(img)
    return _reduce(grey)


def _array_grey(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.size == 0:
        raise ImageError(f"{name} has no pixels")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        mode = "RGBA" if a.shape[2] == 4 else "RGB"
        return _reduce(_image_grey(Image.fromarray(_to_uint8(a), mode)))
    if a.ndim != 2:
        raise ImageError(f"{name}: expected a 2-D grey or (H, W, 3|4) colour array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ImageError(f"{name} contains NaN or Inf")
    grey = a.astype(np.float32)
    if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max() > 255):
        grey *= np.float32(255 / 65535)
    elif a.dtype.kind == "f" and a.max() <= 1.0:
        grey *= np.float32(255)
    return _reduce(np.clip(grey, 0, 255))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "f" and a.max() <= 1.0:
        a = a * 255
    elif a.dtype == np.uint16:
        a = a / 257
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _image_grey(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I"):  # 16- or 32-bit integer grey
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if (mode.startswith("I;16") or a.max() > 255) else 255.0
        return np.clip(a * (255 / top), 0, 255).astype(np.float32)
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ImageError("the image contains NaN or Inf")
        return np.clip(a * 255 if a.max() <= 1.0 else a, 0, 255)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.float32)
    elif mode in ("LA", "La", "PA", "RGBa") or (mode != "RGB" and "A" in img.getbands()):
        img = img.convert("RGBA")
    elif mode != "RGBA":
        img = img.convert("RGB")
    rgb = np.asarray(img, dtype=np.float32)
    alpha = rgb[..., 3] / 255 if rgb.shape[-1] == 4 else None
    grey = _colour_grey(rgb[..., :3], alpha)
    if alpha is not None and alpha.min() < 1:
        # Ink drawn on a transparent sheet: put it on a background that contrasts with the ink.
        ink = float(np.sum(alpha * grey) / max(float(alpha.sum()), 1e-6))
        background = 255.0 if ink < 128 else 0.0
        grey = alpha * grey + (1 - alpha) * background
    return grey.astype(np.float32)


def _colour_grey(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Luminance, unless ink and paper differ mainly in hue: then the colour axis with most contrast."""
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    flat = rgb.reshape(-1, 3)
    if alpha is not None:
        flat = flat[alpha.ravel() > 0.5]
    if len(flat) < 2 or np.ptp(flat, axis=0).max() == 0:
        return lum
    sample = flat[:: max(1, len(flat) // 20000)].astype(np.float64)
    centred = sample - sample.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    axis = vecs[:, -1]
    if axis.sum() < 0:  # keep "brighter" pointing the same way as luminance
        axis = -axis
    proj = rgb @ axis.astype(np.float32)
    spread_l = np.subtract(*np.percentile(lum, [99, 1]))
    spread_p = np.subtract(*np.percentile(proj, [99, 1]))
    if spread_p > 1.5 * spread_l:
        lo, hi = proj.min(), proj.max()
        return (proj - lo) * np.float32(255 / (hi - lo))
    return lum


def _reduce(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    side = max(h, w)
    if side <= WORK_SIDE:
        return grey
    f = WORK_SIDE / side
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(grey, "F").resize(size, Image.Resampling.BOX), dtype=np.float32)


# --- the MNIST pipeline ------------------------------------------------------------------------------


def preprocess(src: PathOrImage, *, strokes: bool = True, name: str | None = None) -> np.ndarray:  # type: ignore[valid-type]
    """A file, Pillow image or array → ``(28, 28)`` uint8 MNIST digit (white ink on black, 0..255).

    Raises :class:`ImageError` for anything unreadable, empty, too large, or without ink.
    """
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "image")
    return mnistify(load_grey(src, label), strokes=strokes, name=label)


def mnistify(grey: np.ndarray, *, strokes: bool = True, name: str = "image") -> np.ndarray:
    """``(H, W)`` grey 0..255, either polarity → ``(28, 28)`` uint8 digit as MNIST made them."""
    g = np.asarray(grey, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ImageError(f"{name}: expected a non-empty 2-D grey image, got shape {g.shape}")
    light = _light_background(g)
    if light:
        g = 255 - g
    bg = _background(g)
    v = g - bg
    if light:  # ink darkens paper by a fraction of its light: divide out the illumination
        v *= 255 / np.maximum(255 - bg, 8.0)
    ink = _drop_specks(_ink(v, name))
    crop = _crop(ink, name)
    if max(crop.shape) >= 2 * BOX:
        # Big enough to have been drawn at a higher resolution: make it bilevel, as NIST's digits were
        # before MNIST scaled them down; the anti-aliasing then makes MNIST's grey edges.
        crop = _crop(np.where(crop > 127.5, np.float32(255), np.float32(0)), name)
    if strokes:
        crop = _normalise_strokes(crop)
    return _centre(_scale_to_box(crop))


def _light_background(g: np.ndarray) -> bool:
    """True when the paper is lighter than the ink: the border is on the light side of the range."""
    h, w = g.shape
    k = max(1, round(0.03 * min(h, w)))
    border = np.concatenate([g[:k].ravel(), g[-k:].ravel(), g[:, :k].ravel(), g[:, -k:].ravel()])
    paper = float(np.median(border))
    for lo, hi in (np.percentile(g, [0.2, 99.8]), (g.min(), g.max())):
        darker, lighter = paper - float(lo), float(hi) - paper  # how far the ink can be either way
        if darker != lighter:
            return darker > lighter
    return paper > 127.5


def _background(g: np.ndarray, iterations: int = 4) -> np.ndarray:
    """A quadratic surface fitted to the background only (ink, the bright outliers, trimmed away)."""
    h, w = g.shape
    if float(np.ptp(g)) == 0:
        return np.full_like(g, g.flat[0])
    # Fit on a grid of at most 64 x 64 block means, evaluate everywhere.
    f = max(1, max(h, w) // 64)
    small = g[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3)) if f > 1 else g
    sh, sw = small.shape
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float64)
    yy, xx = (yy + 0.5) * f / h - 0.5, (xx + 0.5) * f / w - 0.5

    def basis(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.stack([np.ones_like(y), y, x, y * y, x * x, x * y], axis=-1)

    B = basis(yy.ravel(), xx.ravel())
    v = small.ravel().astype(np.float64)
    keep = v <= _otsu(v)  # start from the darker class: the background after inversion
    coef = np.zeros(6)
    for _ in range(iterations):
        if keep.sum() < 12:
            break
        coef, *_ = np.linalg.lstsq(B[keep], v[keep], rcond=None)
        r = v - B @ coef
        sigma = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
        keep = r <= np.median(r[keep]) + 2.5 * sigma + 1e-9
    Y, X = np.mgrid[0:h, 0:w].astype(np.float64)
    Y, X = Y / h - 0.5 + 0.5 / h, X / w - 0.5 + 0.5 / w
    ceiling = float(np.percentile(v[keep], 99)) if keep.any() else float(g.min())
    return np.clip(basis(Y, X) @ coef, float(g.min()), ceiling).astype(np.float32)


def _otsu(v: np.ndarray) -> float:
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


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
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


def _noise(v: np.ndarray) -> float:
    """Robust noise sigma of a background-subtracted image (median absolute deviation, before clipping)."""
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def _ink(v: np.ndarray, name: str) -> np.ndarray:
    """Background-free image → ink in 0..255: noise below 4 sigma zeroed, the ink level stretched to 255.

    Noisy pictures (noise above 3 % of the ink's level) are smoothed first, with two box blurs about 1 %
    of the picture's size wide: strokes are much wider than that, grain is not.
    """
    sigma = _noise(v)
    if float(v.max()) <= 0:
        raise ImageError(f"{name}: no ink found (the image is blank)")
    if sigma > 0 and max(v.shape) >= 64:
        level = _ink_level(np.maximum(v, 0))
        if sigma > 0.03 * level:
            r = max(1, round(0.005 * max(v.shape)))
            v = _box_blur(_box_blur(v, r), r)
            sigma = _noise(v)
    v = np.maximum(v, 0)
    hi = _ink_level(v)
    lo = 4 * sigma
    if hi < max(6 * sigma, 12.0) or hi <= lo:
        raise ImageError(f"{name}: no ink found (nothing stands out from the background)")
    ink = np.clip((v - lo) * np.float32(255 / (hi - lo)), 0, 255)
    ink[v < max(lo, 0.5)] = 0  # a dead zone for the last fraction of a grey level the fit leaves
    return ink.astype(np.float32)


def _ink_level(v: np.ndarray) -> float:
    """The ink's typical brightness: the 90th percentile of the pixels above Otsu's threshold."""
    above = v[v > _otsu(v)]
    return float(np.percentile(above, 90)) if above.size else float(v.max())


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
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


def _drop_specks(ink: np.ndarray) -> np.ndarray:
    """Zero small components lying away from the digit, so a speck cannot stretch the bounding box.

    The digit is every component with at least SPECK_FRACTION of the largest one's ink; smaller ones are
    kept when they lie within SPECK_MARGIN of the digit's box (MNIST's own digits have such fragments).
    """
    mask = ink > 0
    if int(np.count_nonzero(np.diff(mask.astype(np.int8), axis=1) == 1)) > 200_000:
        return ink  # pathological noise: not worth the time, the threshold already did its best
    labels, n = _components(mask)
    if n <= 1:
        return ink
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)
    mass[0] = 0
    major = mass >= SPECK_FRACTION * mass.max()
    major[0] = False
    rows, cols = np.nonzero(major[labels])
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    margin = SPECK_MARGIN * max(r1 - r0 + 1, c1 - c0 + 1)
    rows, cols = np.nonzero(mask)
    lab = labels[rows, cols]
    outside = (rows < r0 - margin) | (rows > r1 + margin) | (cols < c0 - margin) | (cols > c1 + margin)
    far = np.ones(n + 1, bool)  # a component is far when none of its pixels is near the digit
    far[np.unique(lab[~outside])] = False
    keep = major | ~far
    keep[0] = False
    return np.where(keep[labels], ink, 0).astype(np.float32)


def _crop(ink: np.ndarray, name: str) -> np.ndarray:
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if rows.size == 0:
        raise ImageError(f"{name}: no ink found")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2·area / perimeter of the ink (> 127.5), perimeter Crofton-corrected."""
    m = ink > 127.5
    area = int(m.sum())
    if area == 0:
        return 0.0
    p = np.pad(m, 1)
    transitions = int((p[1:, :] != p[:-1, :]).sum() + (p[:, 1:] != p[:, :-1]).sum())
    return 2 * area / (transitions * np.pi / 4)


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float image to ``size = (width, height)`` with Lanczos (anti-aliased when shrinking)."""
    out = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), "F").resize(
        size, Image.Resampling.LANCZOS
    )
    return np.clip(np.asarray(out, dtype=np.float32), 0, 255)


def _morph(a: np.ndarray, radius: int, op: Any) -> np.ndarray:
    """Grey dilation (op=np.maximum) or erosion (np.minimum) with a disk of ``radius`` pixels."""
    h, w = a.shape
    fill = 0.0 if op is np.maximum else 255.0
    p = np.pad(a, radius)
    out = np.full_like(a, fill)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius + radius:
                out = op(out, p[radius + dy : radius + dy + h, radius + dx : radius + dx + w])
    return out


def _normalise_strokes(crop: np.ndarray, work: int = 80) -> np.ndarray:
    """Bring a stroke width far outside MNIST's range back to MNIST's median (relative to digit size)."""
    h, w = crop.shape
    ratio = stroke_width(crop) / max(h, w)
    if STROKE_RANGE[0] <= ratio <= STROKE_RANGE[1] or ratio == 0:
        return crop
    f = work / max(h, w)
    a = _resize(crop, (max(1, round(w * f)), max(1, round(h * f))))
    width = stroke_width(a)
    radius = round((STROKE_TARGET * work - width) / 2)
    if radius > 0:
        a = np.pad(a, radius)
        a = _morph(a, radius, np.maximum)
    elif radius < 0:
        eroded = _morph(a, -radius, np.minimum)
        if (eroded > 127.5).sum() >= 0.25 * (a > 127.5).sum():  # never erode a digit away
            a = eroded
    return _crop(a, "image") if a.any() else crop


def _scale_to_box(crop: np.ndarray) -> np.ndarray:
    h, w = crop.shape
    side = max(h, w)
    if side == BOX:
        return crop
    size = (max(1, round(w * BOX / side)), max(1, round(h * BOX / side)))
    out = _resize(crop, size)
    top = float(out.max())
    if 0 < top < 200:  # a faint digit: MNIST's strokes always reach full white
        out *= np.float32(255 / top)
    return out


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted (row, col) centre, 0-based."""
    a = np.asarray(img, dtype=np.float64)
    total = a.sum()
    rows, cols = np.indices(a.shape)
    return float((a * rows).sum() / total), float((a * cols).sum() / total)


def _centre(digit: np.ndarray) -> np.ndarray:
    """Paste into 28×28 with the centre of mass moved to (14, 14) by a whole-pixel shift, as MNIST."""
    h, w = digit.shape
    cy, cx = centre_of_mass(digit)
    top = int(np.floor(CENTRE - cy + 0.5))
    left = int(np.floor(CENTRE - cx + 0.5))
    out = np.zeros((SIZE, SIZE), np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + h, SIZE), min(left + w, SIZE)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --- predicting files ---------------------------------------------------------------------------------


def predict_files(
    model: Any,
    paths: Iterable[str | os.PathLike[str]],
    top: int = 3,
    save_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Preprocess and predict each file; one dict per file, with ``error`` instead of a result if it fails.

    ``{"path", "label", "probabilities" (10 floats), "top": [[label, p], ...]}`` or ``{"path", "error"}``.
    With ``save_dir``, the 28×28 digit the model saw is written there as ``<name>.png``.
    """
    paths = [str(p) for p in paths]
    digits: list[np.ndarray | None] = []
    results: list[dict[str, Any]] = []
    for p in paths:
        try:
            digits.append(preprocess(p))
            results.append({"path": p})
        except ImageError as e:
            digits.append(None)
            results.append({"path": p, "error": str(e)})
        except OSError as e:  # e.g. a name too long for the file system: this file's error, not the run's
            digits.append(None)
            results.append({"path": p, "error": os_error_line(e, p, "cannot read")})
    ok = [i for i, d in enumerate(digits) if d is not None]
    if ok:
        probs = model.probabilities(np.stack([digits[i] for i in ok]))
        for i, pr in zip(ok, probs, strict=True):
            order = np.argsort(-pr, kind="stable")[: max(1, min(top, 10))]
            results[i].update(
                label=int(np.argmax(pr)),
                probabilities=[float(x) for x in pr],
                top=[[int(k), float(pr[k])] for k in order],
            )
    if save_dir is not None:
        _save_digits(save_dir, paths, digits, results)
    return results


def _save_digits(
    save_dir: str | os.PathLike[str],
    paths: Sequence[str],
    digits: Sequence[np.ndarray | None],
    results: list[dict[str, Any]],
) -> None:
    # A folder or file that cannot be written costs the saved digit, never the predictions: each result
    # gets a ``save_error`` instead (the CLI reports it and exits 1).
    folder = Path(save_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        for r in results:
            if "error" not in r:
                r["save_error"] = os_error_line(e, folder, "cannot create")
        return
    used: set[str] = set()
    for p, d, r in zip(paths, digits, results, strict=True):
        if d is None:
            continue
        stem = Path(p).stem or "image"
        name, k = f"{stem}.png", 1
        while name in used:
            k += 1
            name = f"{stem}-{k}.png"
        used.add(name)
        out = folder / name
        try:
            Image.fromarray(d, "L").save(out)
        except (OSError, ValueError) as e:
            r["save_error"] = (
                os_error_line(e, out, "cannot write")
                if isinstance(e, OSError)
                else f"cannot write {out}: {e}"
            )
            continue
        r["preprocessed"] = str(out)
