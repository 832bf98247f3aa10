"""The named recipes: each specification against the issue's table, Rashid's update rule against his
notebook's code, a short run of every recipe on real MNIST, and (marked slow) the full reproductions."""

from __future__ import annotations

import numpy as np
import pytest
from subset import Subset

from pyflux_mnist.backends.flux_backend import FluxBackend
from pyflux_mnist.backends.numpy_backend import NumpyBackend
from pyflux_mnist.backends.numpy_trainer import NumpyTrainer
from pyflux_mnist.backends.rashid import RashidTrainer
from pyflux_mnist.backends.torch_backend import TorchBackend
from pyflux_mnist.errors import SpecError
from pyflux_mnist.init import init_params
from pyflux_mnist.prepare import prepare
from pyflux_mnist.recipes import RECIPES, get_recipe
from pyflux_mnist.spec import DataSpec, InitSpec, ModelSpec, OptimizerSpec, Recipe
from pyflux_mnist.training import train

# --- the specifications, one assertion block per row of the table ------------------------


def test_the_eight_recipes_are_registered_with_sources_and_notes() -> None:
    assert list(RECIPES) == [
        "flux-tutorial",
        "tensorflow-tutorial",
        "numpy-twolayer",
        "rashid",
        "rashid-rotations",
        "rashid-rotations-5",
        "rashid-rotations-10",
        "keras",
    ]
    for r in RECIPES.values():
        assert r.source and "\n" not in r.source and r.notes
        assert Recipe.from_dict(r.to_dict()) == r  # the model file's JSON round trip


def test_flux_tutorial() -> None:
    r = get_recipe("flux-tutorial")
    assert r.model == ModelSpec((784, 32, 10), ("relu", "identity"), "crossentropy")
    assert r.init.weights == "glorot_uniform" and r.init.bias == 0
    assert r.optimizer == OptimizerSpec("adam", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    assert (r.batch_size, r.steps, r.epochs) == (0, 200, 0)  # 200 full-batch steps
    assert r.data == DataSpec() and r.rule == "backprop" and r.published is None


def test_tensorflow_tutorial() -> None:
    r = get_recipe("tensorflow-tutorial")
    assert r.model.sizes == (784, 512, 256, 128, 10)
    assert r.model.activations == ("identity",) * 4  # no activations, as in the article
    assert r.model.loss == "logitcrossentropy"
    assert r.init == InitSpec("truncated_normal", std=0.1, bias=0.1)
    assert (r.optimizer.name, r.optimizer.lr) == ("adam", 1e-4)
    assert (r.batch_size, r.steps, r.epochs, r.sampling) == (128, 1000, 0, "shuffle")
    assert r.data == DataSpec(scale="unit", train_split="train-55k")
    assert r.published == 0.9206


def test_numpy_twolayer() -> None:
    r = get_recipe("numpy-twolayer")
    assert r.model == ModelSpec((784, 50, 10), ("relu", "relu"), "crossentropy")  # ReLU on the output too
    assert r.init == InitSpec("normal", std=0.01, bias=0.0)
    assert (r.optimizer.name, r.optimizer.lr) == ("descent", 1e-3)
    assert r.data.scale == "raw"  # 0..255, never scaled
    assert (r.batch_size, r.steps, r.sampling) == (100, 5 * 600, "replacement")
    assert r.published == 0.9623
    assert "kill" in r.notes and "seed" in r.notes


def test_rashid_family() -> None:
    base = get_recipe("rashid")
    assert base.model == ModelSpec((784, 200, 10), ("sigmoid", "sigmoid"), "squared_error", bias=False)
    assert base.init.weights == "normal_fan_in"
    assert base.data == DataSpec(scale="rashid", targets=(0.01, 0.99))
    assert (base.batch_size, base.epochs, base.sampling, base.rule) == (1, 1, "sequential", "rashid")
    assert (base.optimizer.name, base.optimizer.lr, base.published) == ("descent", 0.1, 0.954)
    expected = {
        "rashid-rotations": (0.1, 1, 0.9669),
        "rashid-rotations-5": (0.01, 5, 0.9745),
        "rashid-rotations-10": (0.01, 10, 0.9787),
    }
    for name, (lr, epochs, published) in expected.items():
        r = get_recipe(name)
        assert r.data.augment == "rotate10" and r.data.targets == (0.01, 0.99)
        assert (r.optimizer.lr, r.epochs, r.published) == (lr, epochs, published)
        assert (r.model, r.init, r.batch_size, r.sampling, r.rule) == (
            base.model,
            base.init,
            1,
            "sequential",
            "rashid",
        )


def test_keras() -> None:
    r = get_recipe("keras")
    assert r.model == ModelSpec((784, 512, 10), ("relu", "identity"), "crossentropy")
    assert r.init.weights == "glorot_uniform" and r.init.bias == 0
    assert r.optimizer == OptimizerSpec("rmsprop", lr=1e-3, rho=0.9, eps=1e-7)
    assert (r.batch_size, r.epochs, r.sampling) == (128, 5, "shuffle")
    assert r.published == 0.9758
    assert "98.1%" in r.notes  # the article's text disagrees with its own output


def test_rashid_rule_is_refused_where_it_is_not_defined() -> None:
    with pytest.raises(SpecError, match="rashid update rule"):
        get_recipe("keras").replace(rule="rashid")
    with pytest.raises(SpecError, match="update rule"):
        get_recipe("rashid").replace(rule="hebbian")


# --- Rashid's rule against his notebook's train(), written out in float64 ---------------------------


def _notebook_train(wih, who, inputs, targets, lr):
    """The notebook's ``neuralNetwork.train`` for one sample (his code, in our words)."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    hidden = sig(wih @ inputs)
    final = sig(who @ hidden)
    output_errors = targets - final
    hidden_errors = who.T @ output_errors
    who = who + lr * np.outer(output_errors * final * (1 - final), hidden)
    wih = wih + lr * np.outer(hidden_errors * hidden * (1 - hidden), inputs)
    return wih, who


def test_rashid_trainer_follows_the_notebook(mnist) -> None:
    r = get_recipe("rashid")
    p = prepare(Subset(mnist, 50, 10), r.data)
    params = init_params(r.model, r.init, np.random.default_rng(0))
    trainer = RashidTrainer(r, params, p.X_train, p.Y_train)
    trainer.run([np.array([i]) for i in range(50)])
    wih, who = params[0].astype(np.float64), params[2].astype(np.float64)
    for i in range(50):
        wih, who = _notebook_train(wih, who, p.X_train[:, i].astype(np.float64), p.Y_train[:, i], 0.1)
    got = trainer.parameters()
    np.testing.assert_allclose(got[0], wih, atol=2e-5)
    np.testing.assert_allclose(got[2], who, atol=2e-5)
    assert not got[1].any() and not got[3].any()  # no biases
    # A batch of one through the batched path is the same step.
    other = RashidTrainer(r, params, p.X_train, p.Y_train)
    other._batch(np.array([0]))
    first = RashidTrainer(r, params, p.X_train, p.Y_train)
    first.run([np.array([0])])
    np.testing.assert_allclose(other.parameters()[0], first.parameters()[0], atol=1e-6)


def test_rashid_rule_runs_only_on_numpy() -> None:
    X, Y = np.zeros((784, 2), np.float32), np.zeros((10, 2), np.float32)
    r = get_recipe("rashid")
    params = init_params(r.model, r.init, np.random.default_rng(0))
    with pytest.raises(SpecError, match="only the NumPy backend implements it"):
        TorchBackend().trainer(r, params, X, Y)
    with pytest.raises(SpecError, match="only the NumPy backend implements it"):
        FluxBackend().check_recipe(r)
    assert isinstance(NumpyBackend().trainer(r, params, X, Y), RashidTrainer)
    assert isinstance(
        NumpyBackend().trainer(
            get_recipe("keras"),
            init_params(get_recipe("keras").model, get_recipe("keras").init, np.random.default_rng(0)),
            X,
            Y,
        ),
        NumpyTrainer,
    )


# --- every recipe, shortened, end to end on real data ------------------------------------------------

#: steps, training images, accuracy floor (chance is 0.10). Small on purpose: two shared cores.
SHORT = {
    "flux-tutorial": (25, 1000, 0.5),
    "tensorflow-tutorial": (40, 6000, 0.5),  # the first 5000 are TF's validation set: 1000 left
    "numpy-twolayer": (120, 2000, 0.5),
    "rashid": (3000, 3000, 0.8),
    "rashid-rotations": (3000, 1000, 0.6),
    "rashid-rotations-5": (3000, 1000, 0.4),  # lr 0.01: slower at first
    "rashid-rotations-10": (3000, 1000, 0.4),
    "keras": (30, 2000, 0.7),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_learns_in_a_short_run(mnist, name: str) -> None:
    """Far above chance after a fraction of the schedule, on real training and test images."""
    steps, n, floor = SHORT[name]
    result = train(name, "numpy", Subset(mnist, n, 1000), 0, steps=steps)
    assert len(result.losses) == steps
    assert result.test_accuracy > floor, result.test_accuracy


# --- the full reproductions (long: run with -m slow) ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, r in RECIPES.items() if r.published is not None])
def test_full_reproduction_is_within_half_a_point_or_better(mnist, name: str) -> None:
    r = get_recipe(name)
    result = train(r, "numpy", mnist, 0)
    assert result.test_accuracy >= r.published - 0.005, (name, result.test_accuracy)
