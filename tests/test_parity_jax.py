"""The JAX backend against the NumPy reference, step for step on real MNIST, as PyTorch is checked: the
same initial weights and batches, the same losses and weights. Skipped with a reason when JAX is missing."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from parity_runs import numpy_and
from subset import Subset

from pyflux_mnist.backends import backend_status, get_backend
from pyflux_mnist.backends.numpy_backend import NumpyBackend
from pyflux_mnist.errors import TrainingInterrupted
from pyflux_mnist.init import run_start
from pyflux_mnist.prepare import prepare
from pyflux_mnist.recipes import get_recipe
from pyflux_mnist.run import Overrides, resolve_recipe
from pyflux_mnist.training import train

_reason = backend_status()["jax"]
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


def test_flux_tutorial_20_full_batch_adam_steps_match_numpy(mnist) -> None:
    recipe = get_recipe("flux-tutorial")
    r = numpy_and(get_backend("jax"), recipe, mnist, n=2000, steps=20)
    np_losses, jax_losses = r["numpy"][0], r["jax"][0]
    assert len(jax_losses) == 20
    assert jax_losses[-1] < jax_losses[0] * 0.8  # it trains
    np.testing.assert_allclose(jax_losses, np_losses, rtol=1e-4)
    for a, b in zip(r["jax"][1], r["numpy"][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # Same predictions on the test set, except where the top two probabilities nearly tie.
    prepared = r["numpy"][3]
    P = NumpyBackend().probabilities(recipe.model, r["numpy"][1], prepared.X_test)
    Pj = r["jax"][2].probabilities(recipe.model, r["jax"][1], prepared.X_test)
    assert Pj.shape == P.shape == (10, 10000)
    top2 = np.sort(P, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert np.array_equal(P.argmax(0)[clear], Pj.argmax(0)[clear])


@pytest.mark.parametrize(
    ("name", "steps"),
    [("keras", 30), ("numpy-twolayer", 30), ("tensorflow-tutorial", 30), ("rashid", 200)],
)
def test_every_recipe_kind_matches_numpy_step_for_step(mnist, name: str, steps: int) -> None:
    """RMSprop on minibatches; Descent on raw pixels; logit cross-entropy on a deep linear net; per-sample
    squared error (the gradient of Rashid's loss: his own rule is no gradient). Batches in Python's order."""
    recipe = resolve_recipe(get_recipe(name), Overrides(steps=steps)).replace(rule="backprop")
    r = numpy_and(
        get_backend("jax"),
        recipe,
        mnist,
        n=7000 if recipe.data.train_split == "train-55k" else 2000,
        steps=steps,
    )
    np.testing.assert_allclose(r["jax"][0], r["numpy"][0], rtol=1e-4, atol=1e-6)


def test_optimizer_state_continues_from_numpy(mnist) -> None:
    """The checkpoint format is shared: NumPy's Adam state continues in JAX with the same losses."""
    recipe = get_recipe("flux-tutorial")
    prepared = prepare(Subset(mnist, 1000), recipe.data)
    params, _ = run_start(recipe, prepared.X_train.shape[1], seed=0)
    a = NumpyBackend().trainer(recipe, params, prepared.X_train, prepared.Y_train)
    a.run([None] * 5)
    b = get_backend("jax").trainer(recipe, a.parameters(), prepared.X_train, prepared.Y_train)
    b.load_optimizer_state(a.optimizer_state())
    np.testing.assert_allclose(b.run([None] * 5), a.run([None] * 5), rtol=1e-4)


def test_resume_matches_the_uninterrupted_run(mnist, tmp_path) -> None:
    small = Subset(mnist, 600, 200)
    r = resolve_recipe("numpy-twolayer", Overrides(steps=20, hidden=16)).replace(
        optimizer={"name": "adam", "lr": 1e-3}
    )
    reference = train(r, "jax", small, 2)
    ck = tmp_path / "j.npz"

    def interrupt_at_11(done: int, total: int, loss: float) -> None:
        if done == 11:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(r, "jax", small, 2, checkpoint=ck, checkpoint_every=5, on_progress=interrupt_at_11)
    resumed = train(data=small, backend="jax", resume=ck)
    assert len(resumed.losses) == 20
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-6)
    for a, b in zip(resumed.model.params, reference.model.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bench_times_it_with_its_compile_apart(mnist_dir) -> None:
    """bench finds JAX through the registry alone: same start as NumPy, compile time in the set-up."""
    from pyflux_mnist.bench import run_bench

    out = run_bench(["numpy", "jax"], steps=2, repeat=1, threads=1, data_dir=str(mnist_dir))
    rows = {r["backend"]: r for r in out["results"]}
    assert rows["jax"]["status"] == "ok", rows["jax"]
    assert rows["jax"]["init_sha256"] == rows["numpy"]["init_sha256"]
    assert rows["jax"]["first_loss"] == pytest.approx(rows["numpy"]["first_loss"], rel=1e-5)
    assert rows["jax"]["final_loss"] == pytest.approx(rows["numpy"]["final_loss"], rel=1e-4)
    assert rows["jax"]["version"].startswith("jax ")
    assert set(rows["jax"]["setup"]) >= {"import", "init", "first_step"}  # the first step: jit compiling
    assert "jax" in out["machine"] and out["machine"]["jax"]
