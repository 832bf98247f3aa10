"""Small files that decode to huge images or cost a long decode (issue 19, items 1 and 2), built here.

Each is a few bytes to a few hundred kilobytes; decoded naively, each costs hundreds of megabytes to
gigabytes, or a minute of CPU. The JPEGs are made by editing a small real JPEG's markers: the frame header
is given a large size (libjpeg sizes its buffers from it and fills the missing data with grey), and one
scan is repeated (libjpeg accepts any number of scans, each a pass over the whole image).
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

SIDE = 8000


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def webp_rgba(side: int = SIDE) -> bytes:
    """A lossless RGBA WebP, side × side (8000²: a few KB, 256 MB as RGBA)."""
    return _save(Image.new("RGBA", (side, side), (255, 255, 255, 128)), "WEBP", lossless=True, method=0)


def png_16bit(side: int = SIDE) -> bytes:
    """A 16-bit greyscale PNG (mode I;16), side × side (8000²: ~140 KB, 128 MB as stored)."""
    img = Image.new("I;16", (side, side), 40000)
    return _save(img, "PNG", compress_level=9)


def tiff_16bit(side: int = SIDE) -> bytes:
    """A 16-bit greyscale TIFF (deflate), side × side."""
    return _save(Image.new("I;16", (side, side), 40000), "TIFF", compression="tiff_adobe_deflate")


def _segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """A JPEG as (marker, whole segment bytes) up to EOI; a scan's segment includes its entropy data."""
    assert jpeg[:2] == b"\xff\xd8"
    out, i = [(0xD8, jpeg[:2])], 2
    while i < len(jpeg):
        marker = jpeg[i + 1]
        if marker == 0xD9:
            out.append((marker, jpeg[i : i + 2]))
            break
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        end = i + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed 0 or RSTn
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        out.append((marker, jpeg[i:end]))
        i = end
    return out


def big_jpeg(width: int, height: int, mode: str = "CMYK", scans: int = 0, progressive: bool = True) -> bytes:
    """A small real JPEG whose frame header claims ``width`` × ``height``, with its last scan repeated
    ``scans`` more times. Progressive: libjpeg holds the whole image's coefficients (2 bytes each) and
    makes one pass over them per scan, whatever scale is asked for."""
    rng = np.random.default_rng(0)
    bands = len(mode) if mode != "L" else 1
    pixels = rng.integers(0, 256, (64, 64, bands), dtype=np.uint8)
    small = Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode)
    segments = _segments(_save(small, "JPEG", progressive=progressive, quality=90))
    out = []
    for marker, seg in segments:
        if marker in (0xC0, 0xC1, 0xC2):
            seg = seg[:5] + struct.pack(">HH", height, width) + seg[9:]
        out.append(seg)
    last_scan = max(i for i, (m, _) in enumerate(segments) if m == 0xDA)
    out[last_scan + 1 : last_scan + 1] = [segments[last_scan][1]] * scans
    return b"".join(out)
