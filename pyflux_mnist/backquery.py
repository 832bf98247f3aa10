"""Back-query: for each label, the image the network "thinks" is that digit.

Three methods:

* ``prior`` (the default for every network that is not all sigmoids): the most digit-like image the
  network calls that digit. A Gaussian model of what handwritten digits look like, learned from 10000
  MNIST training images *without their labels* (their mean and top 100 principal directions), is the
  prior: the image is ``mean + basis @ (scales * z)`` and gradient ascent (Adam) maximises
  ``log softmax(z_out)[label] - strength/2 · |z|²``. The prior alone (no network) gives the mean digit,
  a blurred ring; everything that makes panel k a k comes from the network's gradient. Without a prior,
  optimisation finds patterns a network reads with certainty but no person reads as a digit (below).

* ``optimise`` (no data needed): regularised input optimisation in pixel space (Simonyan et al. 2013, with
  Yosinski et al.'s 2015 blur prior). From a black image: a step along the class score's gradient
  normalised to unit RMS, L2 decay towards black, clip to 0..1, a 3×3 binomial blur every 2 steps. The
  network (and other networks trained on MNIST) read these as their digits, yet by eye only 0 and 1 are
  recognisable: jitter, total variation, stronger decay or more steps do not change that (docs/images.md).

* ``rashid`` (sigmoid networks, Rashid's *Make Your Own Neural Network*, part 3; ``auto`` picks it when
  every layer is a sigmoid): put the target vector (0.99 for the label, 0.01 elsewhere) on the output,
  undo each layer backwards: the inverse sigmoid (logit), minus the bias, then the transposed weights;
  before the next logit the signal is min-max rescaled into 0.01..0.99, because a logit only accepts
  values strictly between 0 and 1. The input found this way is rescaled into 0.01..0.99 too. The
  transposed weights are not the inverse of the weights, so the result is a picture of what the weights
  favour, not an exact pre-image.

Gradients are backpropagation through the NumPy reference network
(:func:`pyflux_mnist.backends.numpy_maths.forward` and ``activation_grad``). All methods return
``(10, 28, 28)`` float32 images in 0..1 with ink bright, as MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends.numpy_maths import activation_grad, forward
from .errors import PyfluxError, unknown_name
from .mnist import load_mnist
from .model import overflow_error
from .spec import PIXEL_SCALE

if TYPE_CHECKING:
    from .model import Model
    from .spec import ModelSpec

METHODS = ("auto", "prior", "optimise", "rashid")


def method_for(spec: ModelSpec) -> str:
    """``rashid`` when every layer is a sigmoid (then each has an inverse), else ``prior``."""
    return "rashid" if all(a == "sigmoid" for a in spec.activations) else "prior"


def backquery(
    model: Model, method: str = "auto", prior: DigitPrior | None = None, **options: Any
) -> tuple[np.ndarray, str]:
    """``(10, 28, 28)`` images in 0..1 and the method used; ``options`` go to the method.

    The ``prior`` method learns its :class:`DigitPrior` from MNIST's training images (found as ``train``
    finds them) unless one is given."""
    if method not in METHODS:
        raise unknown_name("back-query method", method, METHODS)
    if method == "auto":
        method = method_for(model.spec)
    if method == "rashid":
        return rashid_backquery(model, **options), method
    if method == "prior":
        if prior is None:
            prior = digit_prior(load_mnist().train_images)
        return prior_inputs(model, prior, **options), method
    return optimise_inputs(model, **options), method


def _rescale(v: np.ndarray) -> np.ndarray:
    """Min-max each column into 0.01..0.99 (Rashid's step before every logit)."""
    lo = v.min(axis=0, keepdims=True)
    span = v.max(axis=0, keepdims=True) - lo
    return (v - lo) / np.where(span > 0, span, 1) * 0.98 + 0.01


def _logit(y: np.ndarray) -> np.ndarray:
    return np.log(y / (1 - y))


def rashid_backquery(model: Model, on: float = 0.99, off: float = 0.01) -> np.ndarray:
    """Rashid's back-query through a network of sigmoid layers."""
    spec = model.spec
    if method_for(spec) != "rashid":
        raise PyfluxError(
            "Rashid's back-query inverts sigmoids; this network has "
            f"{', '.join(spec.activations)} layers: use the 'prior' method (what 'auto' picks for it), "
            "whose digits a person reads"
        )
    a = np.full((10, 10), off, dtype=np.float64)
    np.fill_diagonal(a, on)  # column k asks for digit k
    for layer in reversed(range(spec.n_layers)):
        W = model.params[2 * layer].astype(np.float64)
        b = model.params[2 * layer + 1].astype(np.float64)
        x = W.T @ (_logit(a) - b[:, None])
        a = _rescale(x)  # the input of this layer; also what the next logit (one layer down) needs
    return ((a - 0.01) / 0.98).T.reshape(10, 28, 28).astype(np.float32)


def _input_scale(model: Model) -> tuple[float, float]:
    """Pixel value p in 0..1 → network input ``p * k + c`` for the recipe's scaling."""
    k, c = PIXEL_SCALE[model.recipe.data.scale]  # of a value 0..255
    return k * 255, c


def class_scores(model: Model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-softmax of the last pre-activation for ``(784, N)`` pixels in 0..1, and its gradient for
    column k's class k (N = 10: one image per digit)."""
    spec, params = model.spec, model.params
    k, c = _input_scale(model)
    X = (pixels * k + c).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # huge weights: refused below, in one line
        acts = forward(spec, params, X)
        L = spec.n_layers - 1
        z = params[2 * L] @ acts[L] + params[2 * L + 1][:, None]
        z = z - z.max(axis=0, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=0, keepdims=True))
        target = np.eye(10, pixels.shape[1], dtype=np.float32)
        dz = target - np.exp(logp)  # d log p[label] / dz
        dA = params[2 * L].T @ dz
        for layer in reversed(range(L)):
            dZ = activation_grad(spec.activations[layer], acts[layer + 1], dA)
            dA = params[2 * layer].T @ dZ
    if not (np.all(np.isfinite(logp)) and np.all(np.isfinite(dA))):
        raise overflow_error()
    return logp, dA * k


def _blur(x: np.ndarray) -> np.ndarray:
    """3×3 binomial blur of ``(784, N)`` images (edges replicated)."""
    imgs = x.T.reshape(-1, 28, 28)
    p = np.pad(imgs, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4
    out = (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 4
    return out.reshape(-1, 784).T


def optimise_inputs(
    model: Model,
    steps: int = 300,
    lr: float = 0.02,
    l2: float = 0.5,
    blur_every: int = 2,
) -> np.ndarray:
    """Regularised gradient ascent on each class score, from a black image (see the module docstring)."""
    if steps < 1 or not lr > 0 or l2 < 0 or blur_every < 0:
        raise PyfluxError("back-query needs steps >= 1, lr > 0, l2 >= 0 and blur_every >= 0")
    x = np.zeros((784, 10), dtype=np.float32)
    for step in range(1, steps + 1):
        _, g = class_scores(model, x)
        rms = np.sqrt(np.mean(g * g, axis=0, keepdims=True)) + 1e-12
        x += lr * (g / rms) - lr * l2 * x
        np.clip(x, 0, 1, out=x)
        if blur_every and step % blur_every == 0:
            x = _blur(x).astype(np.float32)
    return x.T.reshape(10, 28, 28).copy()


# --- the digit prior -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitPrior:
    """A Gaussian model of handwritten digits in pixel space (0..1), kept to its main directions."""

    mean: np.ndarray  # (784,) the mean digit
    basis: np.ndarray  # (784, K) principal directions, orthonormal columns
    scales: np.ndarray  # (K,) standard deviation of the digits along each direction

    def image(self, z: np.ndarray) -> np.ndarray:
        """Whitened coordinates ``(K, N)`` → ``(784, N)`` pixels (not yet clipped to 0..1)."""
        return self.mean[:, None] + self.basis @ (self.scales[:, None] * z)


def digit_prior(images: np.ndarray, components: int = 100, n: int = 10000) -> DigitPrior:
    """The :class:`DigitPrior` of the first ``n`` of ``images`` ((N, 28, 28) uint8; no labels used)."""
    if not 1 <= components <= 784:
        raise PyfluxError(f"a digit prior needs 1 to 784 components, not {components}")
    X = np.asarray(images[:n], dtype=np.float32).reshape(-1, 784) / 255  # (n, 784)
    if len(X) < 2:
        raise PyfluxError("a digit prior needs at least 2 images")
    mean = X.mean(axis=0)
    Xc = X - mean
    cov = (Xc.T @ Xc).astype(np.float64) / (len(X) - 1)  # (784, 784)
    var, vecs = np.linalg.eigh(cov)  # ascending
    top = np.argsort(var)[::-1][:components]
    scales = np.sqrt(np.maximum(var[top], 0))
    return DigitPrior(mean, vecs[:, top].astype(np.float32), scales.astype(np.float32))


def prior_inputs(
    model: Model,
    prior: DigitPrior,
    steps: int = 300,
    lr: float = 0.05,
    strength: float = 0.1,
) -> np.ndarray:
    """Adam ascent on ``log p(label | image) - strength/2 · |z|²`` over the prior's whitened
    coordinates ``z``, from the mean digit (``z = 0``); see the module docstring."""
    if steps < 1 or not lr > 0 or not strength >= 0:
        raise PyfluxError("back-query needs steps >= 1, lr > 0 and strength >= 0")
    z = np.zeros((len(prior.scales), 10), dtype=np.float32)  # (K, 10): column k asks for digit k
    m, v = np.zeros_like(z), np.zeros_like(z)
    b1, b2 = 0.9, 0.999
    for t in range(1, steps + 1):
        x = np.clip(prior.image(z), 0, 1)  # (784, 10); the clip is passed straight through
        _, g = class_scores(model, x)
        gz = prior.scales[:, None] * (prior.basis.T @ g) - strength * z
        m = b1 * m + (1 - b1) * gz
        v = b2 * v + (1 - b2) * gz * gz
        z += lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
    return np.clip(prior.image(z), 0, 1).T.reshape(10, 28, 28).astype(np.float32)
