"""The NumPy backend against PyTorch (an independent implementation: autograd + torch.optim), from the same
initial weights and the same batches, on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
from parity_runs import numpy_and
from subset import Subset

from pyflux_mnist.backends.numpy_backend import NumpyBackend
from pyflux_mnist.init import init_params
from pyflux_mnist.prepare import prepare
from pyflux_mnist.recipes import get_recipe
from pyflux_mnist.run import Overrides, resolve_recipe

torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install 'pyflux-mnist[torch]'")
from pyflux_mnist.backends.torch_backend import TorchBackend  # noqa: E402

pytestmark = pytest.mark.torch


def test_flux_tutorial_20_full_batch_adam_steps_match_pytorch(mnist) -> None:
    recipe = get_recipe("flux-tutorial")
    r = numpy_and(TorchBackend(), recipe, mnist, n=2000, steps=20)
    np_losses, torch_losses = r["numpy"][0], r["torch"][0]
    assert len(np_losses) == 20
    assert np_losses[-1] < np_losses[0] * 0.8  # it trains
    np.testing.assert_allclose(np_losses, torch_losses, rtol=1e-4)
    for a, b in zip(r["numpy"][1], r["torch"][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # Same predictions on the test set, except where the top two probabilities nearly tie.
    prepared = r["numpy"][3]
    P = NumpyBackend().probabilities(recipe.model, r["numpy"][1], prepared.X_test)
    Pt = TorchBackend().probabilities(recipe.model, r["torch"][1], prepared.X_test)
    top2 = np.sort(P, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert np.array_equal(P.argmax(0)[clear], Pt.argmax(0)[clear])


@pytest.mark.parametrize(
    ("name", "steps"),
    [("keras", 30), ("numpy-twolayer", 30), ("tensorflow-tutorial", 30), ("rashid", 200)],
)
def test_every_recipe_kind_matches_pytorch_step_for_step(mnist, name: str, steps: int) -> None:
    """RMSprop; Descent on raw pixels; logit cross-entropy on a deep linear net; per-sample squared error."""
    # rashid: the gradient of its squared error (Rashid's own rule is no gradient; see tests/test_recipes.py)
    recipe = resolve_recipe(get_recipe(name), Overrides(steps=steps)).replace(rule="backprop")
    r = numpy_and(
        TorchBackend(), recipe, mnist, n=7000 if recipe.data.train_split == "train-55k" else 2000, steps=steps
    )
    np.testing.assert_allclose(r["numpy"][0], r["torch"][0], rtol=1e-4, atol=1e-6)


def test_optimizer_state_round_trips_through_pytorch(mnist) -> None:
    """The checkpoint format is shared: NumPy's Adam state continues in PyTorch with the same losses."""
    recipe = get_recipe("flux-tutorial")
    prepared = prepare(Subset(mnist, 1000), recipe.data)
    params = init_params(recipe.model, recipe.init, np.random.default_rng(0))
    a = NumpyBackend().trainer(recipe, params, prepared.X_train, prepared.Y_train)
    a.run([None] * 5)
    b = TorchBackend().trainer(recipe, a.parameters(), prepared.X_train, prepared.Y_train)
    b.load_optimizer_state(a.optimizer_state())
    np.testing.assert_allclose(a.run([None] * 5), b.run([None] * 5), rtol=1e-4)
