"""photo.py: reading any picture, and the MNIST-style preprocessing measured on real MNIST digits."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pyflux_mnist import photo
from pyflux_mnist.errors import ImageError

REPO = Path(__file__).resolve().parent.parent


# --- MNIST without pyflux_mnist.mnist (a plain reader, until the loader lands) ------------------------


def mnist_dir() -> Path | None:
    for candidate in (os.environ.get("PYFLUX_MNIST_DATA"), REPO.parent / "shared" / "data" / "mnist"):
        if candidate and Path(candidate, "t10k-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    return None


def read_idx(split: str) -> tuple[np.ndarray, np.ndarray]:
    d = mnist_dir()
    if d is None:
        pytest.skip("real MNIST files not found: set PYFLUX_MNIST_DATA")
    with gzip.open(d / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(d / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


class LocalMnist:
    def __init__(self, n_train: int | None = None) -> None:
        self.train_images, self.train_labels = read_idx("train")
        self.test_images, self.test_labels = read_idx("t10k")
        if n_train is not None:
            self.train_images, self.train_labels = self.train_images[:n_train], self.train_labels[:n_train]


def quick_model(data: LocalMnist, recipe: str = "flux-tutorial", steps: int = 40):
    """A small model in a few seconds: full-batch Adam on the first 10000 training digits."""
    from pyflux_mnist.training import train

    small = LocalMnist.__new__(LocalMnist)
    small.train_images, small.train_labels = data.train_images[:10000], data.train_labels[:10000]
    small.test_images, small.test_labels = data.test_images[:1000], data.test_labels[:1000]
    return train(recipe, data=small, steps=steps, seed=0).model


# --- renderings of MNIST digits the way people's photos differ ---------------------------------------


def _big(digit: np.ndarray, rng: np.random.Generator, scale: int = 10) -> np.ndarray:
    """The digit at ``scale`` x its size (bicubic), ink 0..1, on a 420 x 320 canvas at a random place."""
    up = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    ink = np.asarray(up, dtype=np.float32) / 255
    canvas = np.zeros((320, 420), np.float32)
    r, c = rng.integers(0, 320 - 28 * scale), rng.integers(0, 420 - 28 * scale)
    canvas[r : r + 28 * scale, c : c + 28 * scale] = ink
    return canvas


def _paper(ink: np.ndarray, paper: float = 225, pen: float = 35) -> np.ndarray:
    return paper + (pen - paper) * np.clip(ink, 0, 1)


def _grey(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _morph(ink: np.ndarray, f: ImageFilter.Filter) -> np.ndarray:
    return np.asarray(_grey(ink * 255).filter(f), dtype=np.float32) / 255


def render(digit: np.ndarray, kind: str, rng: np.random.Generator) -> Image.Image:
    """One MNIST test digit made to look like a photo or a drawing in one of the ways they differ."""
    if kind == "original":
        return _grey(digit)
    ink = _big(digit, rng)
    if kind == "big":
        return _grey(_paper(ink))
    if kind == "light-on-dark":
        return _grey(_paper(ink, paper=20, pen=230))
    if kind == "thick":
        return _grey(_paper(_morph(ink, ImageFilter.MaxFilter(15))))
    if kind == "thin":
        return _grey(_paper(_morph((ink > 0.5).astype(np.float32), ImageFilter.MinFilter(9))))
    if kind == "blur":
        return _grey(_paper(ink)).filter(ImageFilter.GaussianBlur(6))
    if kind == "noise":
        return _grey(_paper(ink) + rng.normal(0, 25, ink.shape))
    if kind == "lighting":
        shade = np.linspace(1.0, 0.45, ink.shape[1])[None, :] * np.linspace(1.0, 0.8, ink.shape[0])[:, None]
        return _grey(_paper(ink) * shade)
    if kind == "colour":  # blue ballpoint on yellowish paper
        paper, pen = np.array([240, 225, 150]), np.array([30, 40, 150])
        rgb = paper + (pen - paper) * ink[..., None]
        return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if kind == "jpeg":
        buf = io.BytesIO()
        _grey(_paper(ink)).convert("RGB").save(buf, "JPEG", quality=25)
        return Image.open(io.BytesIO(buf.getvalue()))
    if kind == "rgba":  # black ink on a transparent sheet
        rgba = np.zeros((*ink.shape, 4), np.uint8)
        rgba[..., 3] = np.rint(ink * 255).astype(np.uint8)
        return Image.fromarray(rgba, "RGBA")
    if kind == "16bit":
        return Image.fromarray((_paper(ink) * 257).astype(np.uint16))
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


@pytest.fixture(scope="module")
def local_mnist() -> LocalMnist:
    return LocalMnist()


@pytest.fixture(scope="module")
def small_model(local_mnist):
    return quick_model(local_mnist)


# --- fidelity on MNIST itself -------------------------------------------------------------------------


def test_mnist_digits_map_to_themselves(local_mnist):
    rng = np.random.default_rng(1)
    idx = rng.choice(len(local_mnist.train_images), 400, replace=False)
    diffs = np.array(
        [
            np.abs(
                photo.mnistify(local_mnist.train_images[i].astype(np.float32)).astype(int)
                - local_mnist.train_images[i]
            ).mean()
            for i in idx
        ]
    )
    # Measured on all 60000: see docs/images.md. Most are identical up to a grey level or two.
    assert np.mean(diffs < 1.0) > 0.95
    assert np.median(diffs) < 0.5


def test_centre_of_mass_and_box_are_mnists(local_mnist):
    for d in local_mnist.test_images[:50]:
        ink = _big(d, np.random.default_rng(0))
        out = photo.preprocess(_grey(_paper(ink)))
        cy, cx = photo.centre_of_mass(out)
        assert abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9
        rows, cols = np.nonzero(out.any(axis=1))[0], np.nonzero(out.any(axis=0))[0]
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21, 22)
        assert out.dtype == np.uint8 and out.shape == (28, 28) and out.max() >= 200


def test_renderings_predict_nearly_as_well_as_originals(local_mnist, small_model):
    rng = np.random.default_rng(0)
    n = 25
    digits, labels = local_mnist.test_images[:n], local_mnist.test_labels[:n]
    base = small_model.accuracy(digits, labels)
    for kind in KINDS:
        pre = np.stack([photo.preprocess(render(d, kind, rng)) for d in digits])
        acc = small_model.accuracy(pre, labels)
        assert acc >= base - 0.12, f"{kind}: {acc:.3f} vs {base:.3f} on the originals"


# --- reading --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF"])
def test_formats(tmp_path, local_mnist, fmt):
    img = render(local_mnist.test_images[0], "big", np.random.default_rng(0))
    path = tmp_path / f"digit.{fmt.lower()}"
    img.save(path, fmt)
    out = photo.preprocess(path)
    assert out.shape == (28, 28) and out.max() > 200


def test_modes(local_mnist):
    d = local_mnist.test_images[0]
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


def test_exif_orientation_is_applied(tmp_path, local_mnist):
    img = render(local_mnist.test_images[0], "big", np.random.default_rng(0))
    ref = photo.preprocess(img)
    rotated = img.transpose(Image.Transpose.ROTATE_90)  # stored rotated, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    rotated.convert("RGB").save(path, "JPEG", quality=95, exif=exif.tobytes())
    out = photo.preprocess(path)
    assert np.abs(out.astype(int) - ref).mean() < 15


def test_arrays_in_every_dtype(local_mnist):
    d = local_mnist.test_images[3]
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


def test_predict_files_reports_per_file(tmp_path, local_mnist, small_model):
    good = tmp_path / "seven.png"
    render(local_mnist.test_images[0], "big", np.random.default_rng(0)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = photo.predict_files(small_model, [good, bad], top=3, save_dir=tmp_path / "seen")
    assert out[0]["path"] == str(good) and len(out[0]["probabilities"]) == 10
    assert abs(sum(out[0]["probabilities"]) - 1) < 1e-5 and len(out[0]["top"]) == 3
    assert out[0]["top"][0][0] == out[0]["label"]
    assert "error" in out[1] and "label" not in out[1]
    saved = np.asarray(Image.open(tmp_path / "seen" / "seven.png"))
    assert saved.shape == (28, 28)
    assert small_model.predict_images([good])[0]["label"] == out[0]["label"]
