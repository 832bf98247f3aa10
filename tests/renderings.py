"""MNIST test digits made to look like people's photos and drawings, in the ways those differ."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def big(digit: np.ndarray, rng: np.random.Generator, scale: int = 10) -> np.ndarray:
    """The digit at ``scale`` x its size (bicubic), ink 0..1, on a 420 x 320 canvas at a random place."""
    up = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    ink = np.asarray(up, dtype=np.float32) / 255
    canvas = np.zeros((320, 420), np.float32)
    r, c = rng.integers(0, 320 - 28 * scale), rng.integers(0, 420 - 28 * scale)
    canvas[r : r + 28 * scale, c : c + 28 * scale] = ink
    return canvas


def on_paper(ink: np.ndarray, paper: float = 225, pen: float = 35) -> np.ndarray:
    return paper + (pen - paper) * np.clip(ink, 0, 1)


def grey(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _morph(ink: np.ndarray, f: ImageFilter.Filter) -> np.ndarray:
    return np.asarray(grey(ink * 255).filter(f), dtype=np.float32) / 255


def render(digit: np.ndarray, kind: str, rng: np.random.Generator) -> Image.Image:
    """One MNIST test digit made to look like a photo or a drawing in one of the ways they differ."""
    if kind == "original":
        return grey(digit)
    ink = big(digit, rng)
    if kind == "big":
        return grey(on_paper(ink))
    if kind == "light-on-dark":
        return grey(on_paper(ink, paper=20, pen=230))
    if kind == "thick":
        return grey(on_paper(_morph(ink, ImageFilter.MaxFilter(15))))
    if kind == "thin":
        return grey(on_paper(_morph((ink > 0.5).astype(np.float32), ImageFilter.MinFilter(9))))
    if kind == "blur":
        return grey(on_paper(ink)).filter(ImageFilter.GaussianBlur(6))
    if kind == "noise":
        return grey(on_paper(ink) + rng.normal(0, 25, ink.shape))
    if kind == "lighting":
        shade = np.linspace(1.0, 0.45, ink.shape[1])[None, :] * np.linspace(1.0, 0.8, ink.shape[0])[:, None]
        return grey(on_paper(ink) * shade)
    if kind == "colour":  # blue ballpoint on yellowish paper
        paper, pen = np.array([240, 225, 150]), np.array([30, 40, 150])
        rgb = paper + (pen - paper) * ink[..., None]
        return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if kind == "jpeg":
        buf = io.BytesIO()
        grey(on_paper(ink)).convert("RGB").save(buf, "JPEG", quality=25)
        return Image.open(io.BytesIO(buf.getvalue()))
    if kind == "rgba":  # black ink on a transparent sheet
        rgba = np.zeros((*ink.shape, 4), np.uint8)
        rgba[..., 3] = np.rint(ink * 255).astype(np.uint8)
        return Image.fromarray(rgba, "RGBA")
    if kind == "16bit":
        return Image.fromarray((on_paper(ink) * 257).astype(np.uint16))
    raise ValueError(kind)


KINDS = [
    "big",
    "light-on-dark",
    "thick",
    "thin",
    "blur",
    "noise",
    "lighting",
    "colour",
    "jpeg",
    "rgba",
    "16bit",
]
