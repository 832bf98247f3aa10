"""What decoding an image will cost, known from its header before a pixel is decoded (issue 19).

A pixel cap alone does not bound memory: a 38-byte lossless WebP (8000² RGBA) decodes to 256 MB twice
over (the decoder's buffer, then the image), a 16-bit PNG stores 2 bytes a pixel, and a progressive JPEG
holds every DCT coefficient of the full image (2 bytes each, per colour component) whatever scale
``Image.draft`` asks for. Nor does it bound time: each scan of a progressive JPEG is a pass over all those
coefficients, and libjpeg accepts any number of scans (a 13300² file with 300 repeated scans of 456 bytes
each took 9 s; thousands take minutes, and a thread cannot be stopped).

So, before decoding: the scans of a JPEG are counted (a walk over its markers, reading the file in 64 KiB
pieces), and :func:`check` refuses an image whose decode would need more than :data:`MAX_DECODE_BYTES`
(pixels × bytes per pixel as Pillow stores them × the copies its decoder makes, plus the coefficient
buffer of a multi-scan JPEG) or more than :data:`MAX_SCAN_WORK` coefficient passes. Both bounds together
bound a decode's time (measured: docs/reliability.md, "Round three"), so no deadline needs to stop one.
"""

from __future__ import annotations

import math
import re
import struct
from typing import BinaryIO

from PIL import Image

from .errors import ImageError

#: The most memory one decode may need (the web server decodes at most two at once within the same
#: budget, so an upload raises its peak memory by about this much at most).
MAX_DECODE_BYTES = 192 * 2**20
#: Scans in a JPEG: libjpeg's progressive scripts use 6 (grey) to 24 (CMYK); encoders that optimise the
#: script stay far below this. More is a file made to burn time.
MAX_SCANS = 100
#: Coefficient passes (coefficients × scans) of a multi-scan JPEG: 0.2 to 0.5 ns each here (a 9000² JPEG
#: of 49 scans, just within, took 2.2 s on a loaded machine), so a decode's time is bounded up front.
MAX_SCAN_WORK = 4_000_000_000
#: Markers before the first frame's end: a real JPEG has tens.
MAX_MARKERS = 2000

#: Bytes per pixel as Pillow stores each mode (3-band modes are stored 4 bytes wide).
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
#: ... plus what :func:`pyflux_mnist.photo._shrink` makes at full size to reduce it: palette and bilevel
#: pictures are converted first; transparent ones are premultiplied (RGBA → RGBa) by Pillow's reduce.
_CONVERTED = {"P": 4, "1": 1, "PA": 4, "RGBA": 4, "LA": 4}
#: Copies of the decoded pixels a format's decoder holds at once. Measured peaks on 6000² pictures
#: (36 MP), read by ``photo.trace``: WebP 15.5 bytes a pixel (RGBA and lossy RGB alike), PNG I;16 2.5,
#: TIFF I;16 2.6 and RGB 4.7, PNG palette 5.0, BMP RGB 4.7, PNG RGBA 7.9 (premultiplying included).
_COPIES = {"WEBP": 4.0, "TIFF": 1.3, "PNG": 1.25, "BMP": 1.2}

_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker; not a stuffed 0xFF00 nor RSTn


def jpeg_scans(fp: BinaryIO, name: str) -> int:
    """The number of scans (SOS markers) of a JPEG's first frame, reading it from its start.

    Refuses beyond :data:`MAX_SCANS` scans or :data:`MAX_MARKERS` markers, without reading further.
    """
    where = fp.tell()
    try:
        fp.seek(2)  # after SOI
        scans = markers = 0
        while _skip_entropy(fp):  # to the next marker (libjpeg too skips stray bytes between segments)
            code = fp.read(2)[1]
            markers += 1
            if markers > MAX_MARKERS:
                raise ImageError(f"{name} has more than {MAX_MARKERS} JPEG markers (made to burn time?)")
            if code == 0xD9:  # EOI: the first frame ends (an MPO's other pictures are not decoded)
                break
            if code in (0x01, 0xD8):  # markers without a length (RSTn are skipped with the data)
                continue
            head = fp.read(2)
            length = struct.unpack(">H", head)[0] if len(head) == 2 else 0
            if length < 2:
                break  # damaged: libjpeg will say so
            fp.seek(length - 2, 1)
            if code == 0xDA:
                scans += 1
                if scans > MAX_SCANS:
                    raise ImageError(
                        f"{name} is a JPEG of more than {MAX_SCANS} scans (made to burn time?); "
                        "save it again as an ordinary JPEG"
                    )
        return scans
    finally:
        fp.seek(where)


def _skip_entropy(fp: BinaryIO) -> bool:
    """Move to the next marker (past a scan's entropy-coded data or stray bytes); False at the end."""
    while True:
        start = fp.tell()
        chunk = fp.read(1 << 16)
        if len(chunk) < 2:
            return False
        m = _ENTROPY_END.search(chunk)
        if m is not None:
            fp.seek(start + m.start())
            return True
        fp.seek(start + len(chunk) - (chunk[-1] == 0xFF))  # a marker split across two pieces


def cost(img: Image.Image, scans: int = 1, frame: tuple[int, int] | None = None) -> tuple[int, int]:
    """(bytes, coefficient passes) that decoding ``img`` (opened, after any ``draft``) will need.

    ``scans``: of a JPEG (:func:`jpeg_scans`); ``frame``: its size before ``draft`` (default: its size).
    A JPEG of more than one scan (progressive, or baseline with its colour components in separate scans)
    keeps its full-size coefficients: 2 bytes per 8×8 block entry of each component, at its sampling.
    """
    w, h = img.size
    mode = img.mode
    per_pixel = _STORED.get(mode, 4) * _COPIES.get(img.format or "", 1.0) + _CONVERTED.get(mode, 0)
    total = w * h * per_pixel
    work = 0
    layers = getattr(img, "layer", None)
    if img.format in ("JPEG", "MPO") and layers and (scans > 1 or img.info.get("progressive")):
        fw, fh = frame or img.size  # ``img.size`` is the scaled size after draft
        hmax = max(layer[1] for layer in layers)
        vmax = max(layer[2] for layer in layers)
        coefficients = sum(
            math.ceil(fw * layer[1] / hmax / 8) * math.ceil(fh * layer[2] / vmax / 8) * 64 for layer in layers
        )
        total += 2 * coefficients
        work = coefficients * max(scans, 1)
    return int(total), work


def check(img: Image.Image, name: str, scans: int = 1, frame: tuple[int, int] | None = None) -> None:
    """Refuse, in one line, an image whose decode would cost more than the bounds above."""
    need, work = cost(img, scans, frame)
    w, h = frame or img.size
    if need > MAX_DECODE_BYTES:
        raise ImageError(
            f"{name} would need about {need // 2**20} MB to decode ({w}x{h} {img.mode}"
            f"{', progressive' if work else ''}); the limit is {MAX_DECODE_BYTES // 2**20} MB: "
            "save it smaller (or as an ordinary 8-bit JPEG or PNG)"
        )
    if work > MAX_SCAN_WORK:
        raise ImageError(
            f"{name} is a JPEG of {scans} scans over {w}x{h} pixels: too slow to decode "
            "(made to burn time?); save it again as an ordinary JPEG"
        )
