"""The fast NumPy trainer against the plain reference: the same losses and parameters for every kind of
network, minibatch and full batch (a full batch is a sum over blocks, computed by several threads)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from subset import Subset

from pyflux_mnist.backends.numpy_backend import ReferenceTrainer
from pyflux_mnist.backends.numpy_trainer import NumpyTrainer, block_bounds
from pyflux_mnist.init import init_params, run_start
from pyflux_mnist.prepare import prepare
from pyflux_mnist.recipes import get_recipe
from pyflux_mnist.run import Overrides, resolve_recipe


def _prepared(mnist, recipe, n: int):
    return prepare(Subset(mnist, n, 10), recipe.data)


@pytest.mark.parametrize(
    ("name", "steps", "n"),
    [
        ("flux-tutorial", 8, 3000),
        ("keras", 40, 6000),
        ("rashid", 300, 2000),
        ("numpy-twolayer", 30, 2000),
        ("tensorflow-tutorial", 20, 7000),
    ],
)
def test_fast_trainer_gives_the_reference_losses(mnist, name, steps, n) -> None:
    recipe = resolve_recipe(get_recipe(name), Overrides(steps=steps))
    prepared = _prepared(mnist, recipe, n)
    params, sched = run_start(recipe, prepared.X_train.shape[1], seed=0)
    batches = list(sched)
    ref = ReferenceTrainer(recipe, params, prepared.X_train, prepared.Y_train)
    fast = NumpyTrainer(recipe, params, prepared.X_train, prepared.Y_train)
    np.testing.assert_allclose(fast.run(batches), ref.run(batches), rtol=1e-6)
    for a, b in zip(fast.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    if recipe.data.scale != "rashid":  # pixels zero everywhere: their weights never move, state stays 0
        unused = ~prepared.X_train.any(axis=1)
        assert unused.any()
        np.testing.assert_array_equal(fast.parameters()[0][:, unused], params[0][:, unused])
        state = fast.optimizer_state()
        assert not any(state[k][:, unused].any() for k in state if k.endswith("/0"))
        np.testing.assert_allclose(
            state.get("m/0", state.get("acc/0", 0)),
            ref.optimizer_state().get("m/0", ref.optimizer_state().get("acc/0", 0)),
            rtol=1e-3,
            atol=1e-6,
        )


def test_fast_trainer_keeps_every_column_for_foreign_optimiser_state(mnist) -> None:
    """Adam state that is nonzero on a never-lit pixel moves that weight: the trainer must not skip it."""
    recipe = get_recipe("flux-tutorial")
    prepared = _prepared(mnist, recipe, 1000)
    params = init_params(recipe.model, recipe.init, np.random.default_rng(0))
    ref = ReferenceTrainer(recipe, params, prepared.X_train, prepared.Y_train)
    fast = NumpyTrainer(recipe, params, prepared.X_train, prepared.Y_train)
    ref.run([None] * 2)
    state = ref.optimizer_state()
    unused = np.flatnonzero(~prepared.X_train.any(axis=1))
    state["m/0"][:, unused[0]] = 0.5
    state["v/0"][:, unused[0]] = 1.0
    ref2 = ReferenceTrainer(recipe, ref.parameters(), prepared.X_train, prepared.Y_train)
    ref2.load_optimizer_state(state)
    fast2 = NumpyTrainer(recipe, ref.parameters(), prepared.X_train, prepared.Y_train)
    fast2.load_optimizer_state(state)
    np.testing.assert_allclose(fast2.run([None] * 3), ref2.run([None] * 3), rtol=1e-6)
    np.testing.assert_allclose(fast2.parameters()[0], ref2.parameters()[0], rtol=1e-4, atol=1e-6)
    assert fast is not None


@pytest.mark.parametrize("name", ["numpy-twolayer", "tensorflow-tutorial", "rashid", "keras"])
def test_any_network_trained_full_batch_gives_the_reference_losses(mnist, name) -> None:
    """Full batches go through the blocked, threaded path: sigmoid + squared error (and no zero pixels, with
    Rashid's scaling), four identity layers + logitcrossentropy, RMSprop, descent."""
    recipe = get_recipe(name).replace(batch_size=0, rule="backprop")
    prepared = _prepared(mnist, recipe, 9000)  # tensorflow-tutorial leaves out the first 5000
    params = init_params(recipe.model, recipe.init, np.random.default_rng(1))
    ref = ReferenceTrainer(recipe, params, prepared.X_train, prepared.Y_train)
    fast = NumpyTrainer(recipe, params, prepared.X_train, prepared.Y_train, threads=2)
    assert len(fast._blocks) == 4 and len(fast._shares) == 2
    np.testing.assert_allclose(fast.run([None] * 5), ref.run([None] * 5), rtol=1e-6)
    for a, b in zip(fast.parameters(), ref.parameters(), strict=True):
        # RMSprop divides a gradient by the root of its own running square: where a gradient is ~0, its
        # float32 rounding changes the step a lot relatively, hence an absolute tolerance (lr is 1e-3).
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_full_batch_numbers_do_not_depend_on_the_thread_count(mnist) -> None:
    """Each block has its own gradient and they are added in block order: 1, 2 or 3 threads, same bits."""
    recipe = get_recipe("flux-tutorial")
    prepared = _prepared(mnist, recipe, 9000)
    params = init_params(recipe.model, recipe.init, np.random.default_rng(0))
    runs = []
    for threads in (1, 2, 3):
        trainer = NumpyTrainer(recipe, params, prepared.X_train, prepared.Y_train, threads=threads)
        assert len(trainer._shares) == threads
        runs.append((trainer.run([None] * 4), trainer.parameters()))
    for losses, final in runs[1:]:
        np.testing.assert_array_equal(losses, runs[0][0])
        for a, b in zip(final, runs[0][1], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 5000, 8192 * 4, 8192 * 4 + 1, 60000, 180000])
def test_blocks_cover_every_sample_once_in_equal_parts(n: int) -> None:
    bounds = block_bounds(n)
    if n == 0:
        assert bounds == []
        return
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 8192
    assert len(bounds) % 4 == 0 or n < 4


@pytest.mark.parametrize("name", ["keras", "flux-tutorial"])
def test_weights_gradients_and_optimiser_state_share_the_in_out_layout(mnist, name) -> None:
    """Every weight, its gradient and its optimiser slots are ``(out, in)`` views of ``(in, out)`` C-ordered
    arrays: the weight-gradient product writes that layout fastest, and the optimiser's element-wise passes
    then run over matching memory (keras used to keep ``(out, in)`` arrays for minibatches)."""
    recipe = resolve_recipe(get_recipe(name), Overrides(steps=2))
    prepared = _prepared(mnist, recipe, 2000)
    params, sched = run_start(recipe, prepared.X_train.shape[1], seed=0)
    fast = NumpyTrainer(recipe, params, prepared.X_train, prepared.Y_train)
    fast.run(list(sched))
    slots = list(fast.optimizer.slots.values())
    for i in range(0, len(fast.params), 2):
        for array in [fast.params[i], fast.grads[i], *(slot[i] for slot in slots)]:
            assert array.T.flags.c_contiguous, (name, i)
    assert all(p.flags.c_contiguous for p in fast.parameters())  # what leaves the trainer is plain (out, in)
