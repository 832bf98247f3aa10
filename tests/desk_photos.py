"""MNIST test digits written on a sheet of paper lying on a desk, photographed as people do.

:func:`desk_photo` draws the digit (scaled up, bicubic) in a pen colour on a sheet of paper (white, cream or
grey, A4 proportions) covering roughly a third to most of the frame, on a desk (wood, grey, dark, coloured),
then adds one kind of disturbance (``kind``), or all of them at random strengths (``"everything"``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

KINDS = [
    "plain",  # straight sheet, flat light, uniform desk
    "turned",  # the sheet turned up to ±20 degrees
    "shadow",  # a soft shadow across part of the sheet
    "uneven-light",  # a gradient of light and a vignette over the whole frame
    "textured-desk",  # wood grain and blotches
    "pen",  # blue ballpoint, grey pencil, thin or thick strokes
    "blur",  # out of focus
    "noise",  # sensor noise
    "jpeg",  # strong JPEG compression
    "everything",  # all of the above at random strengths
]

DESKS = [
    (150, 105, 60),
    (115, 75, 45),
    (190, 150, 100),
    (90, 90, 95),
    (45, 45, 50),
    (60, 80, 120),
    (70, 110, 80),
    (200, 200, 200),  # a light grey table
    (215, 185, 150),  # light wood
]
PAPERS = [(245, 245, 240), (240, 232, 210), (225, 225, 225), (250, 250, 250)]
PENS = [(25, 25, 30), (30, 45, 150), (90, 90, 95), (60, 20, 20)]


def desk_photo(
    digit: np.ndarray,
    rng: np.random.Generator,
    kind: str = "everything",
    side: int | None = None,
    angle: float | None = None,
) -> Image.Image:
    """One ``(28, 28)`` MNIST digit as an RGB photo of a sheet on a desk, ``side`` px on its long side,
    the sheet turned by ``angle`` degrees clockwise on screen (default: at random for "turned" and
    "everything", else 0)."""
    if kind not in KINDS:
        raise ValueError(kind)
    every = kind == "everything"
    side = side or int(rng.integers(480, 1600))
    w, h = (side, side * 3 // 4) if rng.random() < 0.5 else (side * 3 // 4, side)
    img = _desk(rng, w, h, textured=kind == "textured-desk" or (every and rng.random() < 0.7))
    if angle is None:
        angle = float(rng.uniform(-20, 20)) if kind in ("turned", "everything") else 0.0
    sheet, mask = _sheet(digit, rng, w, h, pen_kind=kind == "pen" or every)
    sheet, mask = (
        sheet.rotate(-angle, Image.Resampling.BICUBIC, expand=True),  # Pillow turns counter-clockwise
        mask.rotate(-angle, Image.Resampling.BILINEAR, expand=True),
    )
    if every and rng.random() < 0.5:  # the phone held at a slant: a trapezoid
        sheet, mask = _perspective(sheet, mask, rng)
    sw, sh = sheet.size
    x = int((w - sw) / 2 + rng.uniform(-0.15, 0.15) * w)
    y = int((h - sh) / 2 + rng.uniform(-0.15, 0.15) * h)
    img.paste(sheet, (x, y), mask)
    a = np.asarray(img, dtype=np.float32)
    if kind == "shadow" or (every and rng.random() < 0.6):
        a *= _shadow(rng, w, h)[..., None]
    if kind == "uneven-light" or (every and rng.random() < 0.6):
        a *= _light(rng, w, h)[..., None]
    out = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")
    if kind == "blur" or (every and rng.random() < 0.5):
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.002, 0.005)) * side))
    if kind == "noise" or (every and rng.random() < 0.5):
        sigma = float(rng.uniform(5, 14))
        noisy = np.asarray(out, dtype=np.float32) + rng.normal(0, sigma, (h, w, 1)).astype(np.float32)
        out = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")
    if kind == "jpeg" or every:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(25, 60) if kind == "jpeg" else rng.integers(40, 90)))
        out = Image.open(io.BytesIO(buf.getvalue()))
    return out


def _perspective(
    sheet: Image.Image, mask: Image.Image, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image]:
    """Narrow one side of the sheet by up to 12 % (a camera tilted towards the far edge)."""
    w, h = sheet.size
    k = float(rng.uniform(0.03, 0.12))
    # Output corners (0,0) (w,0) (w,h) (0,h) sample from a quad whose top edge is wider: the top shrinks.
    src = [(-k * w, 0), (w + k * w, 0), (w, h), (0, h)]
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a, float), np.array(src, float).ravel())
    out = sheet.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC)
    m = mask.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR)
    return out, m


def _desk(rng: np.random.Generator, w: int, h: int, textured: bool) -> Image.Image:
    colour = np.array(DESKS[int(rng.integers(len(DESKS)))], np.float32) * float(rng.uniform(0.8, 1.15))
    if not textured:
        return Image.new("RGB", (w, h), tuple(int(c) for c in np.clip(colour, 0, 255)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
    t = float(rng.uniform(0, np.pi))
    u = xx * np.cos(t) + yy * np.sin(t)
    v = -xx * np.sin(t) + yy * np.cos(t)
    grain = np.sin(2 * np.pi * (u * rng.uniform(20, 60) + 0.8 * np.sin(2 * np.pi * v * rng.uniform(1, 3))))
    coarse = rng.normal(0, 1, (8, 8)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.Resampling.BICUBIC))
    shade = 1 + 0.12 * grain + 0.08 * blotch
    return Image.fromarray(np.clip(colour * shade[..., None], 0, 255).astype(np.uint8), "RGB")


def _sheet(
    digit: np.ndarray, rng: np.random.Generator, w: int, h: int, pen_kind: bool
) -> tuple[Image.Image, Image.Image]:
    """The sheet with the digit on it (RGB) and its opaque mask, at the photo's scale, not yet turned."""
    area = float(rng.uniform(0.3, 0.6)) * w * h
    long, short = np.sqrt(area * np.sqrt(2)), np.sqrt(area / np.sqrt(2))
    sw, sh = (int(short), int(long)) if (h > w) == (rng.random() < 0.8) else (int(long), int(short))
    sw, sh = min(sw, int(0.95 * w)), min(sh, int(0.95 * h))
    paper = np.array(PAPERS[int(rng.integers(len(PAPERS)))], np.float32)
    pen = np.array(PENS[int(rng.integers(len(PENS)))] if pen_kind else PENS[0], np.float32)
    d = max(16, int(min(sw, sh) * rng.uniform(0.35, 0.85)))  # the 28 px MNIST frame drawn this large
    ink = np.asarray(Image.fromarray(digit).resize((d, d), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    if pen_kind and rng.random() < 0.5:  # a thinner or thicker pen than MNIST's
        f = ImageFilter.MinFilter(3) if rng.random() < 0.5 else ImageFilter.MaxFilter(5)
        pen_ink = Image.fromarray(np.uint8(np.clip(ink, 0, 1) * 255)).filter(f)
        ink = np.asarray(pen_ink, dtype=np.float32) / 255
    ink = np.clip(ink, 0, 1)
    page = np.ones((sh, sw, 1), np.float32) * paper
    top = int(np.clip((sh - d) / 2 + rng.uniform(-0.1, 0.1) * sh, 0, sh - d))
    left = int(np.clip((sw - d) / 2 + rng.uniform(-0.1, 0.1) * sw, 0, sw - d))
    page[top : top + d, left : left + d] += (pen - paper) * ink[..., None]
    sheet = Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8), "RGB")
    return sheet, Image.new("L", (sw, sh), 255)


def _shadow(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A soft-edged shadow over the part of the frame beyond a random line (a hand, a phone)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = float(rng.uniform(0, 2 * np.pi))
    dist = (xx - w / 2) * np.cos(t) + (yy - h / 2) * np.sin(t) - float(rng.uniform(0.05, 0.3)) * max(w, h)
    soft = float(rng.uniform(0.02, 0.08)) * max(w, h)
    depth = float(rng.uniform(0.25, 0.5))
    return 1 - depth / (1 + np.exp(-dist / soft))


def _light(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Light falling off across the frame (a window on one side) and towards the corners."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = float(rng.uniform(0, 2 * np.pi))
    u = ((xx - w / 2) * np.cos(t) + (yy - h / 2) * np.sin(t)) / max(w, h) + 0.5  # 0..1 across
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    return (1 - float(rng.uniform(0.2, 0.45)) * u) * (1 - 0.35 * r2)
