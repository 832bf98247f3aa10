"""Turn MNIST's uint8 images into what every backend trains on, and decide the order of the batches.

Layout: images are stored sample-major, ``(N, 784)`` C-contiguous float32, and handed to backends as the
transposed view ``(784, N)``: features × samples, Fortran-ordered. That is Flux's layout (juliacall passes it
to Julia without a copy) and the one BLAS runs fastest for ``W @ X``. Copies made here, each on purpose:

* uint8 → float32 scaling: one new array (the only copy of the pixels).
* ``rotate10`` augmentation: one array three times the size (originals interleaved with rotated copies).
* one-hot targets: a new ``(N, 10)`` array, viewed as ``(10, N)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .spec import PIXEL_SCALE, DataSpec, Recipe

#: Images TensorFlow's read_data_sets held out as validation (the first ones of the training file).
TF_VALIDATION = 5000
#: MNIST's training images.
MNIST_TRAIN = 60000


@dataclass(frozen=True)
class Prepared:
    """Training and test data in the backends' layout."""

    X_train: np.ndarray  # (784, N) float32, F-ordered
    Y_train: np.ndarray  # (10, N) float32, F-ordered
    y_train: np.ndarray  # (N,) uint8 labels
    X_test: np.ndarray  # (784, M) float32, F-ordered
    y_test: np.ndarray  # (M,) uint8 labels
    X_eval_train: np.ndarray  # (784, K) the un-augmented training images, for train accuracy
    y_eval_train: np.ndarray  # (K,)


def scale_images(images: np.ndarray, scale: str = "unit") -> np.ndarray:
    """uint8-valued images ``(N, 28, 28)`` or ``(N, 784)`` → ``(784, N)`` float32 in the recipe's scale."""
    k, c = PIXEL_SCALE[scale]
    return _affine(np.asarray(images).reshape(len(images), 784), k, c)


def scale_unit_images(images: np.ndarray, scale: str = "unit") -> np.ndarray:
    """Float images in [0, 1], ``(N, 28, 28)`` or ``(N, 784)`` → ``(784, N)`` float32 in the recipe's scale
    (the same numbers :func:`scale_images` gives for ``images * 255``)."""
    k, c = PIXEL_SCALE[scale]  # of a value 0..255
    flat = np.asarray(images).reshape(len(images), 784)
    if k * 255 == 1 and not c:  # unit: no copy when already float32
        return np.ascontiguousarray(flat, dtype=np.float32).T
    return _affine(flat, k * 255, c)


def _affine(flat: np.ndarray, k: float, c: float) -> np.ndarray:
    """``flat * k + c`` ``(N, 784)`` → ``(784, N)`` float32, in one copy."""
    X = flat.astype(np.float32)  # the one copy
    if k != 1:
        X *= np.float32(k)
    if c:
        X += np.float32(c)
    return X.T


def one_hot(labels: np.ndarray, targets: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """``(10, N)`` float32 target matrix with ``targets = (off, on)``."""
    labels = np.asarray(labels)
    Y = np.full((len(labels), 10), targets[0], dtype=np.float32)
    Y[np.arange(len(labels)), labels] = targets[1]
    return Y.T


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``(N, 28, 28)`` float images counter-clockwise about their centre, bilinear, zero outside.

    The same as ``scipy.ndimage.rotate(img, degrees, reshape=False, order=1, cval=0)`` (what Rashid's
    tutorial calls), computed for all images at once: every image shares the same sampling grid.
    """
    n, h, w = images.shape
    theta = np.deg2rad(degrees)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y -= cy
    x -= cx
    # Source coordinates of each output pixel (inverse rotation; rows grow downwards).
    src_r = cy + x * np.sin(theta) + y * np.cos(theta)
    src_c = cx + x * np.cos(theta) - y * np.sin(theta)
    r0, c0 = np.floor(src_r).astype(int), np.floor(src_c).astype(int)
    fr, fc = (src_r - r0).astype(np.float32), (src_c - c0).astype(np.float32)
    out = np.zeros(images.shape, dtype=np.float32)
    flat = images.reshape(n, h * w)
    for dr, dc, weight in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        idx = (np.clip(rr, 0, h - 1) * w + np.clip(cc, 0, w - 1)).ravel()
        contrib = flat[:, idx].reshape(n, h, w) * (weight * inside)
        out += contrib
    return out


def augment_rotate10(images: np.ndarray) -> np.ndarray:
    """``(N, 28, 28)`` uint8 → ``(3N, 28, 28)`` float32 in 0..255: each image, then +10°, then -10°.

    Rashid rotates the scaled image with background 0.01; rotating before the affine scaling with
    background 0 gives the same numbers, since bilinear weights sum to one.
    """
    base = images.astype(np.float32)
    out = np.empty((3 * len(images), *images.shape[1:]), dtype=np.float32)
    out[0::3] = base
    out[1::3] = rotate(base, 10)
    out[2::3] = rotate(base, -10)
    return out


def train_samples(data: DataSpec, n_train: int = MNIST_TRAIN) -> int:
    """Training samples a recipe's data sees in one epoch, out of ``n_train`` MNIST training images."""
    n = n_train - TF_VALIDATION if data.train_split == "train-55k" else n_train
    return 3 * n if data.augment == "rotate10" else n


def prepare(mnist, data: DataSpec) -> Prepared:
    """Everything a backend needs from an :class:`~pyflux_mnist.mnist.MnistData`."""
    images, labels = mnist.train_images, mnist.train_labels
    if data.train_split == "train-55k":
        images, labels = images[TF_VALIDATION:], labels[TF_VALIDATION:]
    X_eval = scale_images(images, data.scale)
    if data.augment == "rotate10":
        X_train = scale_images(augment_rotate10(images), data.scale)
        y_train = np.repeat(labels, 3)
    else:
        X_train, y_train = X_eval, labels
    return Prepared(
        X_train=X_train,
        Y_train=one_hot(y_train, data.targets),
        y_train=y_train,
        X_test=scale_images(mnist.test_images, data.scale),
        y_test=mnist.test_labels,
        X_eval_train=X_eval,
        y_eval_train=labels,
    )


@dataclass(frozen=True)
class Schedule:
    """Which samples each step sees. Python decides, so every backend sees the same batches."""

    n_samples: int
    batch_size: int  # 0: full batch
    total_steps: int
    steps_per_epoch: int | None  # None when the recipe counts steps, not epochs
    sampling: str
    seed_sequence: np.random.SeedSequence

    def __iter__(self) -> Iterator[np.ndarray | None]:
        if self.batch_size == 0:
            for _ in range(self.total_steps):
                yield None
            return
        rng = np.random.default_rng(self.seed_sequence)
        n, b = self.n_samples, self.batch_size
        if self.sampling == "replacement":
            for _ in range(self.total_steps):
                yield rng.integers(0, n, size=b, dtype=np.int64)
            return
        if self.steps_per_epoch is not None:  # epochs: a fresh order each epoch, last batch partial
            for _ in range(self.total_steps // self.steps_per_epoch):
                order = self._order(rng)
                for start in range(0, n, b):
                    yield order[start : start + b]
            return
        # A step count: consecutive batches from a stream of epochs (TF's next_batch), always full.
        order, pos = self._order(rng), 0
        for _ in range(self.total_steps):
            if pos + b <= n:
                batch, pos = order[pos : pos + b], pos + b
            else:
                rest = order[pos:]
                order = self._order(rng)
                pos = b - len(rest)
                batch = np.concatenate([rest, order[:pos]])
            yield batch

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        if self.sampling == "sequential":
            return np.arange(self.n_samples, dtype=np.int64)
        return rng.permutation(self.n_samples).astype(np.int64)


def schedule(recipe: Recipe, n_samples: int, seed_sequence: np.random.SeedSequence) -> Schedule:
    """The batch schedule of ``recipe`` over ``n_samples`` training samples."""
    per_epoch = steps_per_epoch(recipe, n_samples) if recipe.epochs else None
    steps = per_epoch * recipe.epochs if per_epoch else recipe.steps
    return Schedule(n_samples, recipe.batch_size, steps, per_epoch, recipe.sampling, seed_sequence)


def steps_per_epoch(recipe: Recipe, n_samples: int) -> int | None:
    """Steps in one pass over ``n_samples``: ``ceil(n / batch)`` for minibatches, 1 for a full batch
    counted in epochs, ``None`` for a full batch counted in steps (it has no epochs)."""
    if recipe.batch_size:
        return -(-n_samples // recipe.batch_size)
    return 1 if recipe.epochs else None
