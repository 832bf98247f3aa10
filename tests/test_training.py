"""train(): the accuracy gate on the real tutorial run, determinism, overrides and divergence."""

from __future__ import annotations

import numpy as np
import pytest
from subset import Subset

from pyflux_mnist.errors import BackendUnavailable, DivergedError, SpecError
from pyflux_mnist.run import Overrides, resolve_recipe
from pyflux_mnist.training import train


def test_flux_tutorial_reaches_the_expected_accuracy(mnist) -> None:
    """The CI accuracy gate: the full recipe, 200 full-batch Adam steps on all 60000 images."""
    result = train("flux-tutorial", "numpy", mnist, seed=0)
    assert len(result.losses) == 200
    assert result.losses[0] == pytest.approx(2.3, abs=0.2)  # ~log(10) at the start
    assert np.all(np.diff(result.losses[::20]) < 0)
    assert result.test_accuracy >= 0.91
    assert result.train_accuracy >= 0.91
    assert result.test_predictions.shape == (10000,)
    assert result.model.accuracy(mnist.test_images, mnist.test_labels) == result.test_accuracy


def test_same_seed_same_numbers_other_seed_other_numbers(mnist) -> None:
    a = train("keras", "numpy", mnist, seed=3, steps=20, hidden=16)
    b = train("keras", "numpy", mnist, seed=3, steps=20, hidden=16)
    c = train("keras", "numpy", mnist, seed=4, steps=20, hidden=16)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.losses, c.losses)


def test_overrides_are_applied_and_checked() -> None:
    r = resolve_recipe("flux-tutorial", Overrides(steps=5, batch_size=64, lr=0.01, hidden=16))
    assert (r.steps, r.batch_size, r.optimizer.lr, r.model.sizes) == (5, 64, 0.01, (784, 16, 10))
    assert resolve_recipe("keras", Overrides(steps=7)).epochs == 0
    for kwargs, msg in [
        ({"steps": -1}, "steps must be a positive"),
        ({"steps": 1, "epochs": 1}, "either steps or epochs"),
        ({"batch_size": -2}, "batch size"),
        ({"lr": float("nan")}, "learning rate"),
        ({"hidden": (3, 4)}, "hidden layer"),
    ]:
        with pytest.raises(SpecError, match=msg):
            resolve_recipe("flux-tutorial", Overrides(**kwargs))
    with pytest.raises(SpecError, match="unknown recipe 'nope'; choose one of: flux-tutorial"):
        resolve_recipe("nope")


def test_unknown_and_unavailable_backends(mnist, monkeypatch) -> None:
    with pytest.raises(SpecError, match="unknown backend 'tensorflow'; choose one of: numpy"):
        train("flux-tutorial", "tensorflow", mnist, steps=1)
    monkeypatch.setenv("PYFLUX_MNIST_JULIA", "0")
    with pytest.raises(BackendUnavailable):
        train("flux-tutorial", "flux", mnist, steps=1)


@pytest.mark.parametrize(
    ("recipe", "lr", "optimizer"),
    [("tensorflow-tutorial", 1.0, "descent"), ("tensorflow-tutorial", 100.0, "adam")],
)
def test_divergence_names_the_step(mnist, recipe: str, lr: float, optimizer: str) -> None:
    """Plain SGD on the deep linear net overflows to NaN; Adam at lr 100 explodes (finite, huge)."""
    r = resolve_recipe(recipe, Overrides(steps=60)).replace(optimizer={"name": optimizer, "lr": lr})
    with pytest.raises(DivergedError, match=r"at step \d+; try a lower learning rate"):
        train(r, "numpy", mnist)


def test_epoch_recipes_report_steps_per_epoch(mnist) -> None:
    result = train("keras", "numpy", Subset(mnist, 1000, 500), epochs=2, hidden=8)
    assert result.epoch_steps == 8 and len(result.losses) == 16
