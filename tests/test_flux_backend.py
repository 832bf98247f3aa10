"""The Flux backend against the NumPy reference, step for step. Needs Julia + Flux through juliacall.

Skipped, with the reason, when the backend is unavailable (juliacall missing, ``PYFLUX_MNIST_JULIA=0``, or
Julia/Flux cannot be set up). With ``PYFLUX_MNIST_JULIA=1`` (CI) an unavailable backend is a failure instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from twin_cases import CASES, near_tie

from pyflux_mnist.backends import julia_bridge
from pyflux_mnist.backends.numpy_backend import NumpyBackend
from pyflux_mnist.errors import BackendUnavailable
from pyflux_mnist.init import init_params
from pyflux_mnist.recipes import FLUX_TUTORIAL
from pyflux_mnist.spec import InitSpec, ModelSpec, OptimizerSpec

REQUIRED = julia_bridge.required()
_reason = julia_bridge.unavailable_reason()

pytestmark = [
    pytest.mark.julia,
    pytest.mark.skipif(_reason is not None and not REQUIRED, reason=f"Flux backend unavailable: {_reason}"),
]


@pytest.fixture(scope="module")
def flux():
    from pyflux_mnist.backends.flux_backend import FluxBackend

    try:
        julia_bridge.load()
    except BackendUnavailable as e:
        if REQUIRED:
            raise
        pytest.skip(f"Flux backend unavailable: {e}")
    return FluxBackend()


def _data(images: np.ndarray, labels: np.ndarray, n: int, on: float = 1.0, off: float = 0.0):
    X = (images[:n].reshape(n, 784).astype(np.float32) / 255).T  # (784, n) F-ordered view
    Y = np.full((n, 10), off, dtype=np.float32)
    Y[np.arange(n), labels[:n]] = on
    return X, Y.T


def _params(model: ModelSpec, init: InitSpec, seed: int = 0) -> list[np.ndarray]:
    return init_params(model, init, np.random.default_rng(seed))


def test_full_batch_tutorial_parity(flux, mnist):
    """20 full-batch Adam steps of the tutorial network on 2000 real images: the same loss curve."""
    r = FLUX_TUTORIAL
    X, Y = _data(mnist.train_images, mnist.train_labels, 2000)
    params = _params(r.model, r.init)
    ours, ref = flux.trainer(r, params, X, Y), NumpyBackend().trainer(r, params, X, Y)
    losses_flux = np.concatenate([ours.run([None] * 10), ours.run([None] * 10)])  # two Julia calls
    losses_np = ref.run([None] * 20)
    np.testing.assert_allclose(losses_flux, losses_np, rtol=1e-4)
    assert losses_flux[-1] < losses_flux[0]
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)

    Xt = (mnist.test_images.reshape(-1, 784).astype(np.float32) / 255).T
    pred = flux.predict(r.model, ours.parameters(), Xt)
    P = NumpyBackend().probabilities(r.model, ref.parameters(), Xt)
    differ = pred != np.argmax(P, axis=0)
    assert pred.shape == (10000,) and set(np.unique(pred)) <= set(range(10))
    assert not (differ & ~near_tie(P)).any(), f"{differ.sum()} predictions differ away from near-ties"
    np.testing.assert_allclose(flux.probabilities(r.model, ours.parameters(), Xt), P, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_minibatch_parity_with_python_batch_order(flux, mnist, case):
    model, opt = CASES[case]
    on_off = (0.99, 0.01) if model.loss == "squared_error" else (1.0, 0.0)
    r = FLUX_TUTORIAL.replace(model=model, optimizer=opt, batch_size=64, steps=12)
    X, Y = _data(mnist.train_images, mnist.train_labels, 1000, *on_off)
    params = _params(model, InitSpec("glorot_uniform"), seed=1)
    order = np.random.default_rng(2).permutation(1000)
    batches = [order[i * 64 : (i + 1) * 64] for i in range(12)]
    ours, ref = flux.trainer(r, params, X, Y), NumpyBackend().trainer(r, params, X, Y)
    losses_flux = np.concatenate([ours.run(batches[:5]), [ours.step(batches[5])], ours.run(batches[6:])])
    np.testing.assert_allclose(losses_flux, ref.run(batches), rtol=1e-4)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    if not model.bias:
        assert all(not b.any() for b in ours.parameters()[1::2])


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "descent"])
def test_checkpoint_round_trip(flux, mnist, optimizer):
    """optimizer_state -> a new trainer -> load -> continue equals training without the interruption."""
    r = FLUX_TUTORIAL.replace(optimizer=OptimizerSpec(optimizer, lr=1e-3 if optimizer != "descent" else 0.1))
    X, Y = _data(mnist.train_images, mnist.train_labels, 500)
    params = _params(r.model, r.init)
    batches = [np.arange(i * 50, (i + 1) * 50) for i in range(10)]
    whole = flux.trainer(r, params, X, Y)
    whole.run(batches[:5])
    state, mid = whole.optimizer_state(), whole.parameters()

    ref = NumpyBackend().trainer(r, params, X, Y)
    ref.run(batches[:5])
    ref_state = ref.optimizer_state()
    assert set(state) == set(ref_state) and int(state["t"]) == 5
    for key in state:
        np.testing.assert_allclose(state[key], ref_state[key], rtol=1e-3, atol=1e-7, err_msg=key)

    resumed = flux.trainer(r, mid, X, Y)
    resumed.load_optimizer_state(state)
    np.testing.assert_array_equal(resumed.run(batches[5:]), whole.run(batches[5:]))
    for a, b in zip(resumed.parameters(), whole.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    # And a NumPy checkpoint resumes in Flux (the formats are the same).
    crossed = flux.trainer(r, ref.parameters(), X, Y)
    crossed.load_optimizer_state(ref_state)
    np.testing.assert_allclose(crossed.run(batches[5:]), ref.run(batches[5:]), rtol=1e-4)


def test_julia_argument_errors_are_one_line(flux, mnist):
    X, Y = _data(mnist.train_images, mnist.train_labels, 100)
    trainer = flux.trainer(FLUX_TUTORIAL, _params(FLUX_TUTORIAL.model, FLUX_TUTORIAL.init), X, Y)
    julia = julia_bridge.load()
    with pytest.raises(julia_bridge.JuliaRuntimeError) as e:
        julia.call("train_steps_b", trainer._trainer, np.array([100], np.int64), np.array([1], np.int64))
    assert str(e.value).startswith("Julia: ArgumentError: batch indices must be 0-based")
    assert "\n" not in str(e.value)
    with pytest.raises(julia_bridge.JuliaRuntimeError, match="activation must be one of"):
        julia.call("build_model", tuple(trainer.parameters()), ("relu", "softplus"), "crossentropy", True)


def test_versions_are_reported(flux):
    status = julia_bridge.julia_status()
    assert status["available"] and status["started"]
    assert status["flux"].split(".")[0] == "0" and status["julia"].startswith("1.")
    # What really runs (issue 21 item 2), read from Julia: Optimisers as Flux loaded it, PythonCall, threads.
    assert status["optimisers"].startswith("0.") and status["pythoncall"].startswith("0.9.")
    assert int(status["julia_threads"]) >= 1
    assert flux.version().startswith(f"Flux {status['flux']}, Optimisers {status['optimisers']}, Julia ")
