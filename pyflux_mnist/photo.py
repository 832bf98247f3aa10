"""Turn anyone's picture of a digit into an MNIST digit, the way MNIST itself was made.

MNIST's digits are white ink on black, cropped to the ink, scaled so the longest side is 20 px (grey edges
from anti-aliasing), pasted into 28×28 and shifted so the intensity-weighted centre of mass sits at row 14,
column 14 (0-based; in MNIST it is 14.00 ± 0.29, 14.01 ± 0.29). People's photos are dark ink on light
paper, any size, colour and position, with shadows, texture and JPEG noise. :func:`mnistify` undoes that:

0. **A sheet on a desk** (:func:`trace`, :mod:`.sheet`): when the photo shows a sheet of paper on a
   darker desk, only the sheet is read: turned back by its edges' angle, its edge band dropped, and its
   own light (shadows included) divided out by a local closing instead of steps 2-3.
1. **Grey** (``_read``): raster formats only (:data:`FORMATS`), size and header checked before
   decoding, JPEG decoded at a reduced scale, at most DETAIL_SIDE px; EXIF orientation applied;
   palette, 16-bit, float and colour images brought to 0..255 grey (colour by luminance, or by the
   colour axis with the most contrast when the ink and the paper differ in hue more than in brightness);
   transparency composited over a background that contrasts with the ink.
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
import math
import os
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import numpy as np
from PIL import ExifTags, Image, ImageDraw, ImageFont, UnidentifiedImageError

from . import decode_cost
from .atomic import atomic_write, output_target
from .errors import ImageError, PyfluxError
from .raster import box_blur as _box_blur
from .raster import components as _components
from .raster import erode, max_filter, min_filter
from .raster import otsu as _otsu
from .sheet import MIN_SIDE, Sheet, find_sheet, whiteness
from .userpaths import check_name_length, file_kind, os_error_line

if TYPE_CHECKING:
    from .model import Model

#: The only file formats read: raster images. Pillow knows more (EPS, PDF, ...), some of which run
#: external programs (Ghostscript); a file of another format, whatever its name, is refused.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG includes MPO (multi-picture)
#: Files larger than this are refused from their size alone, before a byte is read.
MAX_FILE_BYTES = 512 * 2**20
#: Refuse images with more pixels than this before decoding them (decompression bombs). 48-50 MP phone
#: photos fit; a 64 MP RGB image decodes to 192 MB.
MAX_PIXELS = 64_000_000
#: JPEG is decoded at 1/2..1/8 scale (``Image.draft``), so it may declare more: up to Pillow's own limit.
MAX_JPEG_PIXELS = 178_000_000
#: Pictures are reduced to at most this many pixels on the longest side as they are read (sheet crops
#: are taken at this resolution) ...
DETAIL_SIDE = 1280
#: ... the sheet is looked for at this size ...
FIND_SIDE = 320
#: ... and the digit is found on at most this many pixels on the longest side.
WORK_SIDE = 640
#: Luminance of an RGB pixel (ITU-R BT.601, Pillow's own convert("L") weights).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: The sheet's edge band dropped all round, as a fraction of its shorter side.
SHEET_MARGIN = 0.03
#: On a sheet, ink must darken the paper by at least this much (of 255, relative to the paper's light).
SHEET_INK = 40.0
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
_T = TypeVar("_T")


# --- reading -----------------------------------------------------------------------------------------


def open_image(path: str | os.PathLike[str], side: int | None = DETAIL_SIDE) -> Image.Image:
    """Open a raster image file, refusing missing, empty, non-regular, unreadable or absurdly large ones.

    Only the size on disk and the header are read before the checks (size, format, pixel count, the
    memory and time decoding will need: :mod:`.decode_cost`), so a huge file costs neither time nor
    memory. JPEG is decoded at the smallest scale that keeps ``side`` pixels on the longest side (None:
    full size).
    """
    return _with_file(path, lambda f, name: _open(f, name, side))


def decode_need(path: str | os.PathLike[str], side: int | None = DETAIL_SIDE) -> int:
    """The bytes :func:`open_image` will need to decode ``path``, from its header, after the same checks
    (an :class:`ImageError` for a file it would refuse). The web server waits for that much room."""
    return _with_file(path, lambda f, name: _header(f, name, side)[1])


def _with_file(path: str | os.PathLike[str], use: Callable[[BinaryIO, str], _T]) -> _T:
    """``use(file, name)`` on a regular, non-empty file of at most MAX_FILE_BYTES, its errors one line."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except OSError as e:
        raise ImageError(os_error_line(e, p, "cannot read")) from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open below; a device would never end
        raise ImageError(f"{p} is {file_kind(st.st_mode)}, not an image")
    if st.st_size == 0:
        raise ImageError(f"{p} is empty (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(
            f"{p} is too large: {st.st_size} bytes; images up to {MAX_FILE_BYTES // 2**20} MiB are read"
        )
    try:
        with _ReadsWithinFile(io.FileIO(p, "rb"), st.st_size) as f:
            return use(f, str(p))
    except OSError as e:
        raise ImageError(os_error_line(e, p, "cannot read")) from None


class _ReadsWithinFile(io.BufferedReader):
    """A file whose ``read(n)`` never asks for more than is left of it.

    Pillow skips the rest of a PNG chunk by reading its declared length (``PngImagePlugin.load_end``:
    ``self.fp.read(self.__idat)``), and a file object allocates all ``n`` bytes before it reads: an 82-byte
    PNG whose IDAT length was damaged to 83 MB allocated 83 MB (found by fuzzing; up to 2 GiB possible).
    """

    def __init__(self, raw: io.FileIO, size: int) -> None:
        super().__init__(raw)
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > 0:
            n = max(0, min(n, self._size - self.tell()))
        return super().read(n)


def _open(fp: BinaryIO, name: str, side: int | None = DETAIL_SIDE) -> Image.Image:
    img, _ = _header(fp, name, side)
    with _image_errors(name):
        img.load()
    return img


def _header(fp: BinaryIO, name: str, side: int | None) -> tuple[Image.Image, int]:
    """The image opened (not decoded), checked, JPEG drafted to ``side``; and its decode's bytes."""
    with _image_errors(name):
        img = Image.open(fp, formats=FORMATS)
        _check_size(img, name)
        frame, scans = img.size, 1
        if img.format in ("JPEG", "MPO"):
            scans = decode_cost.jpeg_scans(fp, name)
            if side is not None and max(img.size) > side:
                f = side / max(img.size)
                img.draft(None, (math.ceil(img.size[0] * f), math.ceil(img.size[1] * f)))
        decode_cost.check(img, name, scans, frame)  # memory and time, from the header
        return img, decode_cost.cost(img, scans, frame)[0]


@contextlib.contextmanager
def _image_errors(name: str) -> Iterator[None]:
    """Pillow's many exceptions for a bad file → one :class:`ImageError` line naming it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_size decides
        try:
            yield
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError(f"{name} is too large to be a reasonable image (decompression bomb?)") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image in a format read here ({', '.join(FORMATS)})") from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ImageError(f"{name} is damaged or truncated ({e})") from None
        except MemoryError:
            raise ImageError(f"{name}: not enough memory to decode it") from None


def _check_size(img: Image.Image, name: str) -> None:
    w, h = img.size
    limit = MAX_JPEG_PIXELS if img.format in ("JPEG", "MPO") else MAX_PIXELS
    if w * h > limit:
        raise ImageError(
            f"{name} is too large: {w}x{h} = {w * h} pixels; the limit is {limit} (decompression bomb?)"
        )
    if w == 0 or h == 0:
        raise ImageError(f"{name} has no pixels ({w}x{h})")


def _shrink(img: Image.Image, side: int) -> Image.Image:
    """Reduce a big decoded picture by a whole factor (box filter), its longest side staying >= ``side``.

    Before any conversion but palette and bilevel (counted by :mod:`.decode_cost`), so a 16-bit picture
    is reduced as 16 bits, never copied at full size as floats.
    """
    factor = max(img.size) // side
    if factor < 2:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode reduce() cannot take (I;16): the same, by resize
        w, h = img.size
        try:
            return img.resize((w // factor, h // factor), Image.Resampling.BOX)
        except (ValueError, NotImplementedError):
            return img


#: EXIF orientation → the transpose that undoes it (as ``ImageOps.exif_transpose``).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(img: Image.Image) -> Image.Image:
    """The picture at most about 2×DETAIL_SIDE, turned as its EXIF orientation says.

    Shrunk first, turned after: ``ImageOps.exif_transpose`` copies the full-size picture even when there
    is nothing to turn. A broken EXIF block must not stop us: the pixels are used as stored.
    """
    orientation = 1
    with contextlib.suppress(Exception):
        orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1))
    small = _shrink(img, DETAIL_SIDE)
    method = _ORIENTATION.get(orientation)
    return small.transpose(method) if method is not None else small


class _Picture:
    """A picture as read, at most DETAIL_SIDE: its opaque colour pixels if any, its grey when asked."""

    def __init__(self, img: Image.Image | None, grey: np.ndarray | None = None) -> None:
        self._img, self._grey = img, grey
        self.rgb: np.ndarray | None = None  # (H, W, 3) uint8
        if img is None:
            return
        w, h = img.size
        f = min(1.0, DETAIL_SIDE / max(w, h))
        self.size = (max(1, round(w * f)), max(1, round(h * f)))  # as _reduce makes the grey
        opaque = "A" not in img.getbands() and not (img.mode == "P" and "transparency" in img.info)
        if opaque and img.mode in ("P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            rgb = img.convert("RGB")
            if rgb.size != self.size:
                rgb = rgb.resize(self.size, Image.Resampling.BOX)
            self.rgb = np.asarray(rgb)

    def grey(self) -> np.ndarray:
        """``(H, W)`` float32 grey 0..255 (colour by luminance or the most contrasting colour axis)."""
        if self._grey is None:
            assert self._img is not None
            self._grey = _reduce(_image_grey(self._img), DETAIL_SIDE)
        return self._grey

    def shown(self) -> np.ndarray:
        """The picture to show: ``(H, W, 3)`` or ``(H, W)`` uint8."""
        return self.rgb if self.rgb is not None else np.clip(np.rint(self.grey()), 0, 255).astype(np.uint8)


def _read(src: PathOrImage, name: str | None = None) -> _Picture:  # type: ignore[valid-type]
    """Any picture (file, Pillow image, array) → a :class:`_Picture` at most DETAIL_SIDE."""
    if isinstance(src, np.ndarray):
        a: np.ndarray = np.asarray(src)
        if a.ndim == 3 and a.shape[2] in (3, 4) and a.size:
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ImageError(f"{name or 'array'} contains NaN or Inf")
            src = Image.fromarray(_to_uint8(a), "RGBA" if a.shape[2] == 4 else "RGB")
        else:
            return _Picture(None, _reduce(_array_grey(a, name or "array"), DETAIL_SIDE))
    if isinstance(src, Image.Image):
        img, name = src, name or "image"
        _check_size(img, name)
    else:
        name = name or str(src)
        img = open_image(src)
    return _Picture(_upright(img))


def _array_grey(a: np.ndarray, name: str) -> np.ndarray:
    if a.size == 0:
        raise ImageError(f"{name} has no pixels")
    if a.ndim != 2:
        raise ImageError(f"{name}: expected a 2-D grey or (H, W, 3|4) colour array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ImageError(f"{name} contains NaN or Inf")
    grey = a.astype(np.float32)
    if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max() > 255):
        grey *= np.float32(255 / 65535)
    elif a.dtype.kind == "f" and a.max() <= 1.0:
        grey *= np.float32(255)
    return np.clip(grey, 0, 255)


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
    if mode.startswith("I"):  # 16- or 32-bit integer grey (already shrunk: see _shrink)
        a = np.asarray(img)
        top = 65535.0 if (mode.startswith("I;16") or a.max() > 255) else 255.0
        scaled = a.astype(np.float32)
        scaled *= np.float32(255 / top)
        return np.clip(scaled, 0, 255, out=scaled)
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
    lum = rgb @ LUMA
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


def _reduce(grey: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    h, w = grey.shape
    if max(h, w) <= side:
        return grey
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(grey, "F").resize(size, Image.Resampling.BOX), dtype=np.float32)


# --- the MNIST pipeline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """What the pipeline did with one picture, to show where it went wrong (see :func:`strip`)."""

    digit: np.ndarray  # (28, 28) uint8, what the model sees
    photo: np.ndarray  # (H, W) or (H, W, 3) uint8: the picture as read, at most DETAIL_SIDE
    sheet: Sheet | None  # the sheet found, in ``photo``'s pixels; None: the whole picture was used
    straightened: np.ndarray  # (h, w) float32 grey 0..255: the (turned back, cropped) part read
    inside: np.ndarray | None  # (h, w) bool: the part of ``straightened`` searched for ink (None: all)
    ink_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the digit's ink in ``straightened``


def preprocess(src: PathOrImage, *, strokes: bool = True, name: str | None = None) -> np.ndarray:  # type: ignore[valid-type]
    """A file, Pillow image or array → ``(28, 28)`` uint8 MNIST digit (white ink on black, 0..255).

    Raises :class:`ImageError` for anything unreadable, empty, too large, or without ink.
    """
    return trace(src, strokes=strokes, name=name).digit


def trace(
    src: PathOrImage,  # type: ignore[valid-type]
    *,
    strokes: bool = True,
    name: str | None = None,
    sheet: bool = True,
) -> Trace:
    """:func:`preprocess`, keeping the steps: the picture, the sheet found in it, the straightened crop.

    A sheet of paper on a desk (:func:`pyflux_mnist.sheet.find_sheet`) is turned back by its angle and
    cropped inside its edges; the paper's light is then estimated locally (a closing, so that a shadow's
    edge is followed) and divided out. Pictures without a sheet go through :func:`mnistify` as they are.
    ``sheet=False``: a drawing (the web page's canvas), with no paper to look for; it goes the way of a
    picture in which none is found, without the two thirds of the time the looking costs.
    """
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "image")
    pic = _read(src, label)
    found = _find_sheet(pic) if sheet else None
    if found is None:
        g = _reduce(pic.grey(), WORK_SIDE)
        # A picture big enough to show a desk, and nothing found: say that no sheet was found either.
        place = " and no sheet of paper" if sheet and min(g.shape) >= 2 * MIN_SIDE else ""
        try:
            digit, box = _mnistify(g, strokes, label, place)
            return Trace(digit, pic.shown(), None, g, None, box)
        except ImageError:
            found = _find_shaded_sheet(pic) if place else None  # a last resort before the error
            if found is None:
                raise
    g, inside = _straighten(pic, found)
    bg = _paper_light(g, inside)
    v = (bg - g) * (255 / np.maximum(bg, 8.0))  # ink darkens the paper by a fraction of its light
    v[~inside] = 0
    # Any pen or pencil darkens paper by a quarter or more; what is left of a shadow's edge does not.
    ink = _drop_specks(_ink(v, label, inside, " on the sheet", least=SHEET_INK))
    digit, box = _finish(ink, strokes, label)
    return Trace(digit, pic.shown(), found, g, inside, box)


def _find_sheet(pic: _Picture) -> Sheet | None:
    """The sheet, looked for on whiteness (a coloured desk is dark), then on luminance (cream paper on a
    light grey desk differs more in brightness than in its weakest channel), at FIND_SIDE."""
    if pic.rgb is None:
        grey = pic.grey()
        h, w = grey.shape
        features = [grey] if min(h, w) >= 2 * MIN_SIDE else []
    else:
        h, w = pic.rgb.shape[:2]
        rgb = Image.fromarray(pic.rgb, "RGB")
        f = min(1.0, FIND_SIDE / max(h, w))
        small = np.asarray(rgb.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BOX))
        lum = small.astype(np.float32) @ LUMA
        features = [whiteness(small), lum] if min(h, w) >= 2 * MIN_SIDE else []
    for feature in features:
        small_f = _reduce(np.ascontiguousarray(feature, dtype=np.float32), FIND_SIDE)
        sheet = find_sheet(small_f)
        if sheet is not None:
            return sheet.scaled(w / small_f.shape[1])
    return None


def _find_shaded_sheet(pic: _Picture) -> Sheet | None:
    """A sheet under a deep shadow, whose shaded part is darker than the lit desk: whiteness divided by
    the light, taken as the brightest thing within 15 % of the frame (the paper, wherever it is near);
    a shadow's bite out of a corner is allowed (75 % rectangular). Tried only when all else failed."""
    f = whiteness(pic.rgb) if pic.rgb is not None else pic.grey()
    small = _reduce(np.ascontiguousarray(f, dtype=np.float32), FIND_SIDE)
    r = max(2, round(0.15 * max(small.shape)))
    light = _box_blur(max_filter(small, r), max(1, r // 2))
    flat = np.clip(255 * small / np.maximum(light, 1.0), 0, 255).astype(np.float32)
    sheet = find_sheet(flat, rectangularity=0.75)
    return sheet.scaled(f.shape[1] / small.shape[1]) if sheet is not None else None


def _straighten(pic: _Picture, sheet: Sheet) -> tuple[np.ndarray, np.ndarray]:
    """Turn the picture back by the sheet's angle and crop to the sheet, less its edge band.

    → ``(h, w)`` float32 grey at most WORK_SIDE, and the ``(h, w)`` bool mask of the sheet's inside.
    """
    rgb = pic.rgb
    pixels = rgb if rgb is not None else pic.grey()
    h, w = pixels.shape[:2]
    outline = Image.new("L", (w, h), 0)
    ImageDraw.Draw(outline).polygon([(float(x), float(y)) for x, y in sheet.outline], fill=255)
    src = Image.fromarray(pixels, "RGB" if rgb is not None else "F")
    turned = src.rotate(sheet.angle, Image.Resampling.BILINEAR, expand=True)
    mask = np.asarray(outline.rotate(sheet.angle, Image.Resampling.BILINEAR, expand=True)) > 127
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    crop, mask = turned.crop(box), mask[box[1] : box[3], box[0] : box[2]]
    f = min(1.0, WORK_SIDE / max(crop.size))
    size = (max(1, round(crop.size[0] * f)), max(1, round(crop.size[1] * f)))
    crop = crop.resize(size, Image.Resampling.BOX)
    cover = Image.fromarray(mask.astype(np.float32), "F").resize(size, Image.Resampling.BOX)
    inside = np.asarray(cover) > 0.99
    r = max(2, round(SHEET_MARGIN * min(size)))
    inside = erode(np.pad(inside, r), r)[r:-r, r:-r]  # beyond the crop is desk: erode from there too
    a = np.asarray(crop, dtype=np.float32)
    if a.ndim == 3:
        g = _colour_grey(a, inside.astype(np.float32))
        g = np.clip(g, 0, 255)
    else:
        g = a
    return np.ascontiguousarray(g, dtype=np.float32), inside


def _paper_light(g: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The paper's brightness under the ink, shadows included: a grey closing on a coarse grid.

    Blocks of ~1/64 of the picture take their 90th percentile (the paper, not the ink or the grain); a
    dilation then an erosion 4 blocks wide (wider than any MNIST-like stroke on the sheet) fills the
    strokes while following a shadow's edge; the grid is interpolated back to every pixel.
    """
    h, w = g.shape
    b = max(2, round(max(h, w) / 64))
    gh, gw = -(-h // b), -(-w // b)
    p = np.full((gh * b, gw * b), -np.inf, np.float32)
    p[:h, :w] = np.where(inside, _box_blur(g, 1), -np.inf)
    blocks = np.sort(p.reshape(gh, b, gw, b).transpose(0, 2, 1, 3).reshape(gh, gw, b * b), axis=2)
    n = np.isfinite(blocks).sum(axis=2)  # pixels inside, sorted after the -inf of those outside
    at = np.minimum(b * b - n + np.floor(0.9 * np.maximum(n - 1, 0)).astype(np.int64), b * b - 1)
    grid = np.take_along_axis(blocks, at[..., None], axis=2)[..., 0]
    known = n > 0
    if not known.any():
        return np.full_like(g, 255.0)
    grid = _extend(grid, known)  # beyond the sheet, its nearest paper: a closing then has no edge effect
    k = max(1, round(0.06 * max(gh, gw)))
    grid = min_filter(max_filter(grid, k), k).astype(np.float32)
    up = Image.fromarray(grid, "F").resize((gw * b, gh * b), Image.Resampling.BILINEAR)
    return _box_blur(np.asarray(up, dtype=np.float32)[:h, :w], max(1, b // 2))


#: The 3×3 neighbourhood (the cell itself included), row by row.
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _extend(grid: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown cells of a grid, ring by ring, with the mean of their known 8-neighbours."""
    grid = np.where(known, grid, 0.0).astype(np.float64)
    known = known.copy()
    while not known.all():
        p, k = np.pad(grid * known, 1), np.pad(known.astype(np.float64), 1)
        h, w = grid.shape
        total = cast(np.ndarray, sum(p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _NEIGHBOURS))
        count = cast(np.ndarray, sum(k[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _NEIGHBOURS))
        new = ~known & (count > 0)
        grid[new] = total[new] / count[new]
        known |= new
    return grid


def mnistify(grey: np.ndarray, *, strokes: bool = True, name: str = "image") -> np.ndarray:
    """``(H, W)`` grey 0..255, either polarity → ``(28, 28)`` uint8 digit as MNIST made them."""
    return _mnistify(grey, strokes, name)[0]


def _mnistify(
    grey: np.ndarray, strokes: bool, name: str, place: str = ""
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
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
    ink = _drop_specks(_ink(v, name, place=place))
    _refuse_texture(ink, name)
    return _finish(ink, strokes, name)


def _finish(ink: np.ndarray, strokes: bool, name: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Ink → MNIST digit: crop, bilevel when big, stroke width, 20 px box, centre of mass at (14, 14)."""
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if rows.size == 0:
        raise ImageError(f"{name}: no ink found")
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    crop = ink[box[1] : box[3], box[0] : box[2]]
    if max(crop.shape) >= 2 * BOX:
        # Big enough to have been drawn at a higher resolution: make it bilevel, as NIST's digits were
        # before MNIST scaled them down; the anti-aliasing then makes MNIST's grey edges.
        solid = crop > 127.5
        r, c = np.nonzero(solid.any(axis=1))[0], np.nonzero(solid.any(axis=0))[0]
        if r.size:  # the box of what is left, for the strip
            box = (box[0] + int(c[0]), box[1] + int(r[0]), box[0] + int(c[-1]) + 1, box[1] + int(r[-1]) + 1)
        crop = _crop(np.where(solid, np.float32(255), np.float32(0)), name)
    if strokes:
        crop = _normalise_strokes(crop)
    return _centre(_scale_to_box(crop)), box


def _refuse_texture(ink: np.ndarray, name: str) -> None:
    """A desk (wood grain, fabric) with no sheet and no digit: "ink" everywhere, reaching every border."""
    h, w = ink.shape
    if min(h, w) < 2 * MIN_SIDE:
        return
    m = ink > 0
    k = max(1, round(0.02 * min(h, w)))
    edges = (m[:k].any(), m[-k:].any(), m[:, :k].any(), m[:, -k:].any())
    if sum(edges) < 4:
        return
    labels, n = _components(m)
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
    if n >= 8 and np.sum(mass >= 0.01 * mass.sum()) >= 8:
        raise ImageError(
            f"{name}: no sheet and no digit found (only texture reaching every edge of the picture)"
        )


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


def _noise(v: np.ndarray) -> float:
    """Robust noise sigma of a background-subtracted image (median absolute deviation, before clipping)."""
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def _ink(
    v: np.ndarray, name: str, inside: np.ndarray | None = None, place: str = "", least: float = 12.0
) -> np.ndarray:
    """Background-free image → ink in 0..255: noise below 4 sigma zeroed, the ink level stretched to 255.

    Noisy pictures (noise above 3 % of the ink's level) are smoothed first, with two box blurs about 1 %
    of the picture's size wide: strokes are much wider than that, grain is not. The noise is measured
    on the ``inside`` pixels only (all when None); ``place`` names where ink was looked for in errors;
    the ink level must reach at least ``least``.
    """

    def noise(a: np.ndarray) -> float:
        return _noise(a if inside is None else a[inside])

    sigma = noise(v)
    if float(v.max()) <= 0:
        raise ImageError(f"{name}: no ink found{place} (the image is blank)")
    if sigma > 0 and max(v.shape) >= 64:
        level = _ink_level(np.maximum(v, 0))
        if sigma > 0.03 * level:
            r = max(1, round(0.005 * max(v.shape)))
            v = _box_blur(_box_blur(v, r), r)
            sigma = noise(v)
    v = np.maximum(v, 0)
    hi = _ink_level(v)
    lo = 4 * sigma
    if hi < max(6 * sigma, least) or hi <= lo:
        raise ImageError(f"{name}: no ink found{place} (nothing stands out from the background)")
    ink = np.clip((v - lo) * np.float32(255 / (hi - lo)), 0, 255)
    ink[v < max(lo, 0.5)] = 0  # a dead zone for the last fraction of a grey level the fit leaves
    return ink.astype(np.float32)


def _ink_level(v: np.ndarray) -> float:
    """The ink's typical brightness: the 90th percentile of the pixels above Otsu's threshold."""
    above = v[v > _otsu(v)]
    return float(np.percentile(above, 90)) if above.size else float(v.max())


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


# --- showing the steps ----------------------------------------------------------------------------------


def strip(t: Trace, height: int = 200, heading: str = "") -> Image.Image:
    """One RGB picture of the steps, left to right: the photo with the sheet's outline (red; none found:
    the whole picture was read), the straightened crop with the digit's box (green), the 28×28 digit.
    ``heading``, when given, is a first line above them (``predict --save-preprocessed`` names the file
    and the model's answer there, so that a strip opened on its own says whose it is and what was read).

    For a person to see where a prediction went wrong; :func:`preprocess_strip` makes it from a file.
    """
    # Captions grow with the strip (14 px at the default height, 21 px for the web page's 300) so they stay
    # legible when the strip is shown scaled down to a page's width.
    size = max(14, round(height * 0.07))
    head = round(size * 1.3) + 16 if heading else 0  # the heading and a gap under it
    pad, title = 8, size + 8 + head
    font = ImageFont.load_default(size=size)  # Pillow's scalable font (pillow>=10.1, as pictures uses)
    photo = Image.fromarray(t.photo).convert("RGB")
    f = height / photo.size[1]
    shown = photo.resize((max(1, round(photo.size[0] * f)), height), Image.Resampling.BOX)
    draw = ImageDraw.Draw(shown)
    if t.sheet is not None:
        corners = [(float(x) * f, float(y) * f) for x, y in t.sheet.outline]
        draw.line([*corners, corners[0]], fill=(230, 30, 30), width=3)
    s = np.clip(np.rint(t.straightened), 0, 255).astype(np.uint8)
    if t.inside is not None:  # what was not searched (the sheet's edge band, the desk) in flat grey
        s = np.where(t.inside, s, np.uint8(150))
    straight = Image.fromarray(s).convert("RGB")
    g = height / straight.size[1]
    straight = straight.resize((max(1, round(straight.size[0] * g)), height), Image.Resampling.BOX)
    x0, y0, x1, y1 = (v * g for v in t.ink_box)
    ImageDraw.Draw(straight).rectangle((x0 - 1, y0 - 1, x1, y1), outline=(30, 170, 60), width=2)
    digit = Image.fromarray(t.digit).convert("RGB").resize((height, height), Image.Resampling.NEAREST)
    if t.sheet is not None:
        captions = (
            "photo, sheet outlined",
            f"sheet turned back {t.sheet.angle:+.1f}°",
            "28x28 the model sees",
        )
    else:
        captions = ("photo (no sheet found)", "read as a whole", "28x28 the model sees")
    panels = [shown, straight, digit]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    slots = [max(p.size[0], round(measure.textlength(c, font=font)) + 6) for p, c in zip(panels, captions)]
    head_font = ImageFont.load_default(size=round(size * 1.3))
    width = max(
        sum(slots) + pad * (len(panels) + 1), round(measure.textlength(heading, font=head_font)) + 2 * pad
    )
    out = Image.new("RGB", (width, height + title + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    if heading:
        draw.text((pad, pad), heading, fill=(20, 20, 20), font=head_font)
    x = pad
    for panel, caption, slot in zip(panels, captions, slots, strict=True):
        out.paste(panel, (x + (slot - panel.size[0]) // 2, title + pad))
        draw.text((x + slot / 2, pad + 2 + head), caption, fill=(20, 20, 20), font=font, anchor="mt")
        x += slot + pad
    return out


def preprocess_strip(src: PathOrImage, *, name: str | None = None) -> tuple[np.ndarray, Image.Image]:  # type: ignore[valid-type]
    """A picture → the ``(28, 28)`` uint8 digit and its :func:`strip` (an RGB Pillow image), in memory."""
    t = trace(src, name=name)
    return t.digit, strip(t)


# --- predicting files ---------------------------------------------------------------------------------


def predict_files(
    model: Model,
    paths: Iterable[str | os.PathLike[str]],
    top: int = 3,
    save_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Preprocess and predict each file; one dict per file, with ``error`` instead of a result if it fails.

    ``{"path", "label", "probabilities" (10 floats), "top": [[label, p], ...]}`` or ``{"path", "error"}``.
    With ``save_dir``, the 28×28 digit the model saw is written there as ``<name>.png``, and the steps
    (:func:`strip`: photo with the sheet outlined, straightened crop, 28×28) as ``<name>-strip.png``.
    """
    paths = [str(p) for p in paths]
    traces: list[Trace | None] = []
    results: list[dict[str, Any]] = []
    for p in paths:
        try:
            traces.append(trace(p))
            results.append({"path": p})
        except ImageError as e:
            traces.append(None)
            results.append({"path": p, "error": str(e)})
        except OSError as e:  # e.g. a name too long for the file system: this file's error, not the run's
            traces.append(None)
            results.append({"path": p, "error": os_error_line(e, p, "cannot read")})
        except MemoryError:  # under a memory limit: this file fails, the others are still read
            traces.append(None)
            results.append({"path": p, "error": f"{p}: not enough memory to read it"})
    digits = [t.digit if t is not None else None for t in traces]
    ok = [i for i, d in enumerate(digits) if d is not None]
    if ok:
        probs = model.probabilities(np.stack([d for d in digits if d is not None]))
        for i, pr in zip(ok, probs, strict=True):
            order = np.argsort(-pr, kind="stable")[: max(1, min(top, 10))]
            results[i].update(
                label=int(np.argmax(pr)),
                probabilities=[float(x) for x in pr],
                top=[[int(k), float(pr[k])] for k in order],
            )
    if save_dir is not None:
        _save_digits(save_dir, paths, traces, results)
    return results


def _strip_heading(path: str | os.PathLike[str], result: dict[str, Any]) -> str:
    """``photos/seven.jpg: read as 7 (97.9%)``, the first line of a saved strip."""
    if "label" not in result:
        return str(path)
    label = result["label"]
    return f"{path}: read as {label} ({result['probabilities'][label]:.1%})"


def _save_digits(
    save_dir: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    traces: Sequence[Trace | None],
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
    for p, t, r in zip(paths, traces, results, strict=True):
        if t is None:
            continue
        stem = Path(p).stem or "image"
        base, k = stem, 1
        while f"{base}.png" in used or f"{base}-strip.png" in used:
            k += 1
            base = f"{stem}-{k}"
        used.update((f"{base}.png", f"{base}-strip.png"))
        out, steps = folder / f"{base}.png", folder / f"{base}-strip.png"
        try:  # both names first: never the digit saved and then its strip refused
            for where, what in ((out, "preprocessed digit"), (steps, "preprocessing strip")):
                check_name_length(where, what)
                output_target(where)
        except PyfluxError as e:
            r["save_error"] = str(e)
            continue
        for image, where, key in (
            (Image.fromarray(t.digit, "L"), out, "preprocessed"),
            (strip(t, heading=_strip_heading(p, r)), steps, "strip"),
        ):
            png = io.BytesIO()
            image.save(png, "PNG")  # as it is: the digit stays one grey channel
            try:
                with atomic_write(where) as f:  # atomic, and never onto a device node or FIFO
                    f.write(png.getvalue())
            except PyfluxError as e:
                r["save_error"] = str(e)
                break
            except OSError as e:
                r["save_error"] = os_error_line(e, where, "cannot write")
                break
            r[key] = str(where)
