"""Photos of a sheet of paper on a desk: the sheet found, turned back and read; large and hostile files."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from desk_photos import KINDS, _desk, desk_photo
from PIL import Image
from renderings import KINDS as PLAIN_KINDS
from renderings import render

from pyflux_mnist import photo
from pyflux_mnist.errors import ImageError
from pyflux_mnist.sheet import find_sheet

# --- reading desk photos --------------------------------------------------------------------------------


def _accuracy(model, pictures, labels) -> float:
    """Accuracy over all pictures; one that cannot be read counts as wrong."""
    right = 0
    for img, label in zip(pictures, labels, strict=True):
        with contextlib.suppress(ImageError):
            right += int(model.predict(photo.preprocess(img)[None])[0] == label)
    return right / len(labels)


def test_desk_photos_read_nearly_as_well_as_raw_digits(mnist, small_model):
    n = 20
    digits, labels = mnist.test_images[:n], mnist.test_labels[:n]
    base = small_model.accuracy(digits, labels)
    for k, kind in enumerate(("turned", "shadow", "everything")):
        rng = np.random.default_rng(k)
        photos = [desk_photo(d, rng, kind, side=int(rng.integers(480, 900))) for d in digits]
        acc = _accuracy(small_model, photos, labels)
        assert acc >= base - 0.15, f"{kind}: {acc:.3f} vs {base:.3f} on the raw digits"


@pytest.mark.parametrize("angle", [-19.0, -8.5, 0.0, 4.0, 17.0])
def test_the_sheets_angle_is_found_and_undone(mnist, angle):
    img = desk_photo(mnist.test_images[1], np.random.default_rng(3), "turned", side=700, angle=angle)
    t = photo.trace(img)
    assert t.sheet is not None and abs(t.sheet.angle - angle) < 1.0
    straight = photo.preprocess(desk_photo(mnist.test_images[1], np.random.default_rng(3), "plain", side=700))
    assert np.abs(t.digit.astype(int) - straight).mean() < 20  # the same digit, upright


def test_no_sheet_in_mnist_digits_or_the_plain_renderings(mnist):
    """Pictures without a desk keep the old pipeline: MNIST digits are never turned (their slant is
    theirs to keep)."""
    for d in mnist.test_images[:300]:
        assert find_sheet(d.astype(np.float32)) is None
    rng = np.random.default_rng(0)
    for kind in PLAIN_KINDS:
        for d in mnist.test_images[:10]:
            img = render(d, kind, rng)
            assert photo.trace(img).sheet is None, kind


def test_mnist_test_digits_through_the_pipeline_lose_nothing(mnist, small_model):
    x, y = mnist.test_images[:500], mnist.test_labels[:500]
    piped = np.stack([photo.preprocess(d) for d in x])
    assert small_model.accuracy(piped, y) >= small_model.accuracy(x, y) - 0.005


def test_renderer_kinds_are_all_read(mnist):
    rng = np.random.default_rng(5)
    for kind in KINDS:
        t = photo.trace(desk_photo(mnist.test_images[2], rng, kind, side=600))
        assert t.digit.shape == (28, 28) and t.digit.max() >= 200, kind


def test_blank_sheet_and_bare_desk_are_one_line_errors():
    blank = np.zeros((28, 28), np.uint8)
    for seed in range(6):
        with pytest.raises(ImageError, match="no ink found on the sheet") as e:
            photo.preprocess(desk_photo(blank, np.random.default_rng(seed), "everything", side=640))
        assert "\n" not in str(e.value)
    for seed in range(4):
        desk = _desk(np.random.default_rng(seed), 640, 480, textured=seed % 2 == 0)
        with pytest.raises(ImageError, match="no ink found and no sheet of paper"):
            photo.preprocess(desk)


# --- showing the steps ----------------------------------------------------------------------------------


def test_strip_shows_the_outline_the_crop_and_the_digit(mnist):
    img = desk_photo(mnist.test_images[0], np.random.default_rng(1), "turned", side=640, angle=12)
    digit, strip = photo.preprocess_strip(img)
    assert np.array_equal(digit, photo.preprocess(img))
    a = np.asarray(strip)
    assert strip.mode == "RGB" and a.shape[0] > 200
    red = (a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)
    green = (a[..., 1] > 150) & (a[..., 0] < 60) & (a[..., 2] < 90)
    assert red.sum() > 200 and green.sum() > 100  # the sheet's outline and the digit's box are drawn
    # The last panel is the 28x28 digit, enlarged by whole pixels.
    h = a.shape[0] - 22 - 16
    panel = a[22 + 8 : 22 + 8 + h, -8 - h : -8, 0]
    centres = ((np.arange(28) + 0.5) * h / 28).astype(int)
    assert np.array_equal(panel[np.ix_(centres, centres)], digit)


def test_predict_saves_a_strip_per_photo(tmp_path, mnist, small_model):
    good = tmp_path / "desk.jpg"
    desk_photo(mnist.test_images[0], np.random.default_rng(0), "everything", side=800).save(good)
    out = photo.predict_files(small_model, [good], save_dir=tmp_path / "seen")
    assert out[0]["strip"] == str(tmp_path / "seen" / "desk-strip.png")
    assert Image.open(out[0]["strip"]).size[0] > 3 * 150
    assert np.asarray(Image.open(out[0]["preprocessed"])).shape == (28, 28)


# --- large photos and bombs ----------------------------------------------------------------------------


def test_a_48_megapixel_jpeg_is_read_at_a_reduced_scale(tmp_path, mnist):
    small = desk_photo(mnist.test_images[0], np.random.default_rng(0), "plain", side=1000)
    path = tmp_path / "phone.jpg"
    small.resize((8000, 6000), Image.Resampling.BILINEAR).save(path, quality=80)
    img = photo.open_image(path)
    assert max(img.size) < 8000 and max(img.size) >= photo.DETAIL_SIDE  # decoded by Image.draft
    assert photo.preprocess(path).max() >= 200


def test_a_50_megapixel_png_is_read_and_a_bomb_is_not(tmp_path):
    ok = tmp_path / "big.png"
    a = np.full((6120, 8160), 230, np.uint8)
    a[2000:4000, 3900:4200] = 20  # a "1"
    Image.fromarray(a).save(ok)
    assert photo.preprocess(ok).max() >= 200
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10000, 9000)).save(bomb)  # 90 MP in a small file
    with pytest.raises(ImageError, match="too large"):
        photo.preprocess(bomb)


def test_a_jpeg_bomb_is_refused_from_its_header(tmp_path):
    buf = io.BytesIO()
    Image.new("L", (64, 64), 200).save(buf, "JPEG")
    b = bytearray(buf.getvalue())
    sof = b.index(b"\xff\xc0")
    b[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")  # 3.6 gigapixels
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(b))
    with pytest.raises(ImageError, match="too large"):
        photo.preprocess(path)


# --- issue 16, items 4 and 14 ---------------------------------------------------------------------------


def test_predict_checks_a_huge_files_size_before_reading_it(tmp_path, mnist, small_model):
    """A 3 GB file under a 1.5 GB address-space limit: one line for it, the other file still predicted."""
    model = tmp_path / "m.npz"
    small_model.save(model)
    good = tmp_path / "good.png"
    render(mnist.test_images[0], "big", np.random.default_rng(0)).save(good)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(3 * 2**30)  # sparse: no disk used
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))\n"
        "from pyflux_mnist.cli import main\n"
        "sys.argv = ['pyflux-mnist', 'predict', *sys.argv[1:]]\n"
        "main()\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(model), str(huge), str(good)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and "too large" in lines[0] and lines[1].startswith(f"{good}: ")


def test_colour_arrays_with_nan_are_one_line():
    rgb = np.zeros((40, 40, 3), np.float32)
    rgb[3, 4, 1] = np.nan
    with pytest.raises(ImageError, match="NaN or Inf"):
        photo.preprocess(rgb)


def test_only_raster_formats_are_opened(tmp_path):
    """PostScript renamed .png must never reach Pillow's EPS reader (which runs Ghostscript)."""
    eps = tmp_path / "digit.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\n")
    with pytest.raises(ImageError, match="not an image in a format read here") as e:
        photo.preprocess(eps)
    assert "PNG, JPEG" in str(e.value) and "Ghostscript" not in str(e.value)
    ico = tmp_path / "icon.png"
    Image.new("L", (32, 32), 255).save(ico, "ICO")  # a format Pillow reads but we do not
    with pytest.raises(ImageError, match="not an image in a format read here"):
        photo.preprocess(ico)
    for fmt in photo.FORMATS:
        assert fmt in Image.registered_extensions().values() or fmt == "PPM"
