"""photo.py: reading any picture, and the MNIST-style preprocessing measured on real MNIST digits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from renderings import KINDS, big, grey, on_paper, render

from pyflux_mnist import photo
from pyflux_mnist.errors import ImageError

# --- fidelity on MNIST itself -------------------------------------------------------------------------


def test_mnist_digits_map_to_themselves(mnist):
    rng = np.random.default_rng(1)
    idx = rng.choice(len(mnist.train_images), 400, replace=False)
    diffs = np.array(
        [
            np.abs(
                photo.mnistify(mnist.train_images[i].astype(np.float32)).astype(int) - mnist.train_images[i]
            ).mean()
            for i in idx
        ]
    )
    # Measured on all 60000: see docs/images.md. Most are identical up to a grey level or two.
    assert np.mean(diffs < 1.0) > 0.95
    assert np.median(diffs) < 0.5


def test_centre_of_mass_and_box_are_mnists(mnist):
    for d in mnist.test_images[:50]:
        ink = big(d, np.random.default_rng(0))
        out = photo.preprocess(grey(on_paper(ink)))
        cy, cx = photo.centre_of_mass(out)
        assert abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9
        rows, cols = np.nonzero(out.any(axis=1))[0], np.nonzero(out.any(axis=0))[0]
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21, 22)
        assert out.dtype == np.uint8 and out.shape == (28, 28) and out.max() >= 200


def test_renderings_predict_nearly_as_well_as_originals(mnist, small_model):
    rng = np.random.default_rng(0)
    n = 25
    digits, labels = mnist.test_images[:n], mnist.test_labels[:n]
    base = small_model.accuracy(digits, labels)
    for kind in KINDS:
        pre = np.stack([photo.preprocess(render(d, kind, rng)) for d in digits])
        acc = small_model.accuracy(pre, labels)
        assert acc >= base - 0.12, f"{kind}: {acc:.3f} vs {base:.3f} on the originals"


# --- reading --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF"])
def test_formats(tmp_path, mnist, fmt):
    img = render(mnist.test_images[0], "big", np.random.default_rng(0))
    path = tmp_path / f"digit.{fmt.lower()}"
    img.save(path, fmt)
    out = photo.preprocess(path)
    assert out.shape == (28, 28) and out.max() > 200


def test_modes(mnist):
    d = mnist.test_images[0]
    ref = photo.preprocess(render(d, "big", np.random.default_rng(0)))
    img = render(d, "big", np.random.default_rng(0))
    for converted in (
        img.convert("RGB"),
        img.convert("P"),
        img.convert("1", dither=Image.Dither.NONE),
        img.convert("LA"),
        img.convert("I"),
        img.convert("F"),
    ):
        out = photo.preprocess(converted)
        assert np.abs(out.astype(int) - ref).mean() < 12, converted.mode


def test_exif_orientation_is_applied(tmp_path, mnist):
    img = render(mnist.test_images[0], "big", np.random.default_rng(0))
    ref = photo.preprocess(img)
    rotated = img.transpose(Image.Transpose.ROTATE_90)  # stored rotated, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    rotated.convert("RGB").save(path, "JPEG", quality=95, exif=exif.tobytes())
    out = photo.preprocess(path)
    assert np.abs(out.astype(int) - ref).mean() < 15


def test_arrays_in_every_dtype(mnist):
    d = mnist.test_images[3]
    ref = photo.preprocess(d)
    assert np.array_equal(photo.preprocess(d.astype(np.float32) / 255), ref)
    assert np.array_equal(photo.preprocess(d.astype(np.uint16) * 257), ref)
    rgb = np.repeat(d[..., None], 3, axis=2)
    assert np.abs(photo.preprocess(rgb).astype(int) - ref).max() <= 2


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a picture at all")
    truncated = tmp_path / "cut.png"
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "PNG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    for path, words in (
        (tmp_path / "missing.png", "no such file"),
        (empty, "empty"),
        (junk, "not an image"),
        (truncated, "damaged"),
        (blank, "no ink"),
        (tmp_path, "directory"),
    ):
        with pytest.raises(ImageError, match=words):
            photo.preprocess(path)


def test_pure_noise_has_no_ink():
    noise = np.random.default_rng(0).normal(128, 10, (100, 100))
    with pytest.raises(ImageError, match="no ink"):
        photo.preprocess(np.clip(noise, 0, 255).astype(np.uint8))


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (3000, 2000), 255).save(path)  # small file, many pixels
    monkeypatch.setattr(photo, "MAX_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match="too large"):
        photo.preprocess(path)


def test_components_match_a_flood_fill():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = rng.random((30, 40)) < 0.3
        labels, n = photo._components(mask)
        # Each label is 8-connected and no two labels touch.
        assert set(np.unique(labels[mask])) == set(range(1, n + 1))
        assert not labels[~mask].any()
        p = np.pad(labels, 1)
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = p[1:-1, 1:-1]
            b = p[1 + dy : p.shape[0] - 1 + dy, 1 + dx : p.shape[1] - 1 + dx]
            touching = (a > 0) & (b > 0)
            assert np.array_equal(a[touching], b[touching])


def test_predict_files_reports_per_file(tmp_path, mnist, small_model):
    good = tmp_path / "seven.png"
    render(mnist.test_images[0], "big", np.random.default_rng(0)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = photo.predict_files(small_model, [good, bad], top=3, save_dir=tmp_path / "seen")
    assert out[0]["path"] == str(good) and len(out[0]["probabilities"]) == 10
    assert abs(sum(out[0]["probabilities"]) - 1) < 1e-5 and len(out[0]["top"]) == 3
    assert out[0]["top"][0][0] == out[0]["label"]
    assert "error" in out[1] and "label" not in out[1]
    saved = np.asarray(Image.open(tmp_path / "seen" / "seven.png"))
    assert saved.shape == (28, 28)
    assert photo.predict_files(small_model, [good])[0]["label"] == out[0]["label"]
