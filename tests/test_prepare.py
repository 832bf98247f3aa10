"""Data preparation: layout, scaling, one-hot targets, rotation, and the batch schedule."""

from __future__ import annotations

import numpy as np
import pytest

from pyflux_mnist.prepare import augment_rotate10, one_hot, prepare, rotate, scale_images, schedule
from pyflux_mnist.recipes import get_recipe
from pyflux_mnist.spec import DataSpec


def test_layout_is_features_by_samples_fortran_order_without_extra_copies() -> None:
    images = np.arange(3 * 784, dtype=np.uint8).reshape(3, 28, 28)
    X = scale_images(images)
    assert X.shape == (784, 3) and X.dtype == np.float32
    assert X.flags.f_contiguous and X.T.flags.c_contiguous
    assert X.base is not None  # a view of the one float32 buffer
    np.testing.assert_allclose(X[:, 1], images[1].ravel() / 255, rtol=1e-6)


@pytest.mark.parametrize(("scale", "lo", "hi"), [("unit", 0, 1), ("raw", 0, 255), ("rashid", 0.01, 1.0)])
def test_scales(scale: str, lo: float, hi: float) -> None:
    X = scale_images(np.array([[0, 255] * 392], dtype=np.uint8), scale)
    assert X.min() == pytest.approx(lo) and X.max() == pytest.approx(hi)


def test_one_hot_with_custom_targets() -> None:
    Y = one_hot(np.array([3, 0]), (0.01, 0.99))
    assert Y.shape == (10, 2)
    assert (
        Y[3, 0] == pytest.approx(0.99) and Y[0, 0] == pytest.approx(0.01) and Y[0, 1] == pytest.approx(0.99)
    )


def _stroke_angle(img: np.ndarray) -> float:
    """Angle of the principal axis of the ink, degrees counter-clockwise from vertical (rows grow down)."""
    r, c = np.nonzero(img > 0.5 * img.max())
    w = img[r, c]
    y, x = -(r - np.average(r, weights=w)), c - np.average(c, weights=w)
    cov = np.cov(np.stack([x, y]), aweights=w)
    _, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, -1]
    if vy < 0:
        vx, vy = -vx, -vy
    return float(np.degrees(np.arctan2(-vx, vy)))


def test_rotation_turns_a_vertical_stroke_counter_clockwise() -> None:
    img = np.zeros((1, 28, 28), dtype=np.float32)
    img[0, 4:24, 13:15] = 255
    assert _stroke_angle(img[0]) == pytest.approx(0, abs=0.5)
    assert _stroke_angle(rotate(img, 10)[0]) == pytest.approx(10, abs=1.0)
    assert _stroke_angle(rotate(img, -10)[0]) == pytest.approx(-10, abs=1.0)
    # Bilinear rotation about the centre keeps the ink's centre and (nearly) its mass.
    assert rotate(img, 10).sum() == pytest.approx(img.sum(), rel=0.02)
    np.testing.assert_allclose(rotate(img, 0), img, atol=1e-4)


def test_augment_interleaves_original_and_rotations() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    out = augment_rotate10(images)
    assert out.shape == (6, 28, 28)
    np.testing.assert_array_equal(out[3], images[1])
    np.testing.assert_allclose(out[4], rotate(images[1:2].astype(np.float32), 10)[0])


def test_tf_split_drops_the_first_5000(mnist) -> None:
    p = prepare(mnist, DataSpec(train_split="train-55k"))
    assert p.X_train.shape == (784, 55000)
    np.testing.assert_array_equal(p.y_train[:5], mnist.train_labels[5000:5005])
    assert p.X_test.shape == (784, 10000)


def _batches(name: str, n: int, **changes):
    r = get_recipe(name).replace(**changes)
    s = schedule(r, n, np.random.SeedSequence(0))
    return s, list(s)


def test_epoch_schedule_visits_every_sample_once_per_epoch_with_partial_last_batch() -> None:
    s, batches = _batches("keras", 1000, epochs=2)
    assert s.steps_per_epoch == 8 and s.total_steps == 16 == len(batches)
    assert len(batches[7]) == 1000 - 7 * 128
    first = np.concatenate(batches[:8])
    assert sorted(first) == list(range(1000))
    assert not np.array_equal(first, np.concatenate(batches[8:]))  # reshuffled


def test_step_schedule_uses_full_batches_across_epochs() -> None:
    _, batches = _batches("tensorflow-tutorial", 300, steps=5)
    assert all(len(b) == 128 for b in batches)
    seen = np.concatenate(batches[:2])
    assert len(set(seen.tolist())) == 256  # no repeats inside one epoch


def test_sequential_and_replacement_and_full_batch() -> None:
    _, seq = _batches("rashid", 5)
    assert [b.tolist() for b in seq] == [[0], [1], [2], [3], [4]]
    _, rep = _batches("numpy-twolayer", 50, steps=3)
    assert len(rep) == 3 and all(len(b) == 100 for b in rep)  # with replacement: batch > n is fine
    s, full = _batches("flux-tutorial", 50)
    assert s.total_steps == 200 and all(b is None for b in full)


def test_schedule_is_reproducible_from_the_seed() -> None:
    _, a = _batches("keras", 500, epochs=1)
    _, b = _batches("keras", 500, epochs=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_rotation_equals_scipy_on_real_digits(mnist) -> None:
    """Rashid's tutorial calls scipy.ndimage.rotate(order=1, reshape=False); ours gives the same pixels."""
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy not installed (only needed for this check)")
    images = mnist.test_images[:50].astype(np.float32)
    for angle in (10, -10):
        ref = np.stack([ndimage.rotate(i, angle, reshape=False, order=1, cval=0.0) for i in images])
        # scipy's mode="constant" blends the outermost ring with the background differently; inside it
        # every pixel agrees.
        np.testing.assert_allclose(rotate(images, angle)[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-3)
