"""The NumPy backend's gradients against central finite differences, in float64, for every activation and
every loss; and its optimisers against their written-out formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pyflux_mnist.backends.numpy_maths import Optimizer, loss_and_grads, probabilities
from pyflux_mnist.init import init_params
from pyflux_mnist.prepare import one_hot
from pyflux_mnist.spec import ACTIVATIONS, LOSSES, InitSpec, ModelSpec, OptimizerSpec


def _problem(spec: ModelSpec, seed: int = 0, n: int = 7):
    rng = np.random.default_rng(seed)
    params = [p.astype(np.float64) for p in init_params(spec, InitSpec("normal", std=0.3, bias=0.1), rng)]
    X = rng.random((784, n))
    targets = (0.01, 0.99) if spec.loss == "squared_error" else (0.0, 1.0)
    Y = one_hot(rng.integers(0, 10, n), targets).astype(np.float64)
    return params, X, Y


def _numeric_grad(spec, params, X, Y, i, idx, h=1e-4):
    """Five-point central difference: truncation error O(h^4), rounding ~1e-12."""

    def f(delta: float) -> float:
        shifted = [p.copy() for p in params]
        shifted[i][idx] += delta
        return loss_and_grads(spec, shifted, X, Y)[0]

    return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


@pytest.mark.parametrize(("activation", "loss"), list(itertools.product(ACTIVATIONS, LOSSES)))
def test_gradients_match_finite_differences(activation: str, loss: str) -> None:
    spec = ModelSpec(sizes=(784, 6, 5, 10), activations=(activation, activation, activation), loss=loss)
    params, X, Y = _problem(spec)
    _, grads = loss_and_grads(spec, params, X, Y)
    rng = np.random.default_rng(1)
    for i, p in enumerate(params):
        # every bias entry and a sample of weights, including ones fed by nonzero pixels
        picks = [
            np.unravel_index(k, p.shape) for k in rng.choice(p.size, size=min(p.size, 12), replace=False)
        ]
        for idx in picks:
            num = _numeric_grad(spec, params, X, Y, i, idx)
            ana = grads[i][idx]
            denom = max(abs(num), abs(ana), 1e-8)
            assert abs(num - ana) / denom < 1e-6 or abs(num - ana) < 1e-10, (i, idx, num, ana)


def test_no_bias_model_gets_no_bias_gradient() -> None:
    spec = ModelSpec(sizes=(784, 8, 10), activations=("sigmoid", "sigmoid"), loss="squared_error", bias=False)
    params, X, Y = _problem(spec)
    _, grads = loss_and_grads(spec, params, X, Y)
    assert not grads[1].any() and not grads[3].any()
    assert grads[0].any()


def test_probabilities_sum_to_one() -> None:
    spec = ModelSpec()
    params, X, _ = _problem(spec)
    P = probabilities(spec, params, X)
    assert P.shape == (10, X.shape[1])
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-12)


def test_crossentropy_value_is_flux_formula() -> None:
    spec = ModelSpec(sizes=(784, 4, 10), activations=("relu", "identity"))
    params, X, Y = _problem(spec)
    loss, _ = loss_and_grads(spec, params, X, Y)
    P = probabilities(spec, params, X)
    flux = np.mean(-np.sum(Y * np.log(P + np.finfo(np.float32).eps), axis=0))
    assert loss == pytest.approx(flux, rel=1e-12)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "descent"])
def test_optimizer_matches_written_out_formula(name: str) -> None:
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3, 4))
    spec = OptimizerSpec(name, lr=0.01, eps=1e-8)
    params = [p.copy()]
    opt = Optimizer(spec, params)
    m = v = acc = np.zeros_like(p)
    ref = p.copy()
    for t in range(1, 6):
        g = rng.standard_normal(p.shape)
        opt.update(params, [g], [True])
        if name == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            ref -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        elif name == "rmsprop":
            acc = 0.9 * acc + 0.1 * g * g
            ref -= 0.01 * g / (np.sqrt(acc) + 1e-8)
        else:
            ref -= 0.01 * g
        np.testing.assert_allclose(params[0], ref, rtol=1e-12, atol=1e-14)
