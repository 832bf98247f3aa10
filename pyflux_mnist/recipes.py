"""The named recipes: the Flux tutorial network and the four other tutorials this project reproduces.

Each is written from the article's code (copies in ``shared/tutorials/``), quirks included; ``notes`` says
what each quirk does and what we had to interpret.
"""

from __future__ import annotations

from typing import Any

from .errors import SpecError, unknown_name
from .spec import DataSpec, InitSpec, ModelSpec, OptimizerSpec, Recipe

FLUX_TUTORIAL = Recipe(
    name="flux-tutorial",
    model=ModelSpec(sizes=(784, 32, 10), activations=("relu", "identity"), loss="crossentropy"),
    init=InitSpec("glorot_uniform"),
    optimizer=OptimizerSpec("adam", lr=1e-3),
    batch_size=0,
    steps=200,
    source="The classic Flux.jl MNIST MLP: Chain(Dense(28^2, 32, relu), Dense(32, 10), softmax), "
    "crossentropy, ADAM(), train! over repeated((X, Y), 200)",
    notes="Full batch: every one of the 200 steps sees all 60000 training images (repeated((X, Y), 200) "
    "is 200 steps, not 200 epochs of minibatches). Pixels are Float32 Gray values, i.e. x/255; Dense's "
    "default glorot_uniform weights, zero biases; ADAM() is lr 0.001, betas (0.9, 0.999). The article "
    "prints loss(X, Y) at most every 10 s (throttle) and reports train and test accuracy without "
    "stating numbers, so there is nothing to compare with: we report ours.",
)

TENSORFLOW_TUTORIAL = Recipe(
    name="tensorflow-tutorial",
    model=ModelSpec(
        sizes=(784, 512, 256, 128, 10),
        activations=("identity", "identity", "identity", "identity"),
        loss="logitcrossentropy",
    ),
    init=InitSpec("truncated_normal", std=0.1, bias=0.1),
    optimizer=OptimizerSpec("adam", lr=1e-4),
    data=DataSpec(train_split="train-55k"),
    batch_size=128,
    steps=1000,
    sampling="shuffle",
    published=0.9206,
    source="DigitalOcean, 'How To Build a Neural Network to Recognize Handwritten Digits with TensorFlow' "
    "(TF 1.x)",
    notes="Quirks kept: the article defines no activation functions, so the four layers compose to one "
    "linear map and the network is a softmax regression with a deep parameterisation (which is why "
    "it stops near 92%, the accuracy of a linear classifier on MNIST). Its dropout layer (keep_prob 0.5) "
    "is computed but the output layer reads layer_3, not layer_drop, so dropout never acts: we leave it "
    "out. TF's read_data_sets scales pixels to 0..1 and holds the first 5000 training images out as "
    "validation; we train on the other 55000, with next_batch's order (shuffled each epoch, a batch "
    "that crosses an epoch boundary joins the end of one order to the start of the next). "
    "Interpretation: TF 1.x's Adam adds epsilon 1e-8 to sqrt(v) before bias correction, we after "
    "(Optimisers.jl's formula); at these gradient sizes the difference does not show.",
)

NUMPY_TWOLAYER = Recipe(
    name="numpy-twolayer",
    model=ModelSpec(sizes=(784, 50, 10), activations=("relu", "relu"), loss="crossentropy"),
    init=InitSpec("normal", std=0.01),
    optimizer=OptimizerSpec("descent", lr=1e-3),
    data=DataSpec(scale="raw"),
    batch_size=100,
    steps=3000,
    sampling="replacement",
    published=0.9623,
    source="NumPy TwoLayerNet (PyTorch only loads the data): Affine-ReLU-Affine-ReLU-SoftmaxWithLoss",
    notes="Quirks kept: raw 0-255 pixels (torchvision's train_data, never scaled), and a ReLU after the "
    "output layer before the softmax, which can kill a class for good: once an output unit is negative "
    "for every input its gradient is zero and that digit can never be predicted again (with raw pixels "
    "the first steps are large, so an unlucky seed loses whole digits; the issue saw 0.788 for one seed "
    "and 0.961 for two others, see the spread below). Batches of 100 are drawn with replacement "
    "(np.random.choice); 5 x 600 steps. Interpretation: the article works in float64 and puts 1e-7 "
    "inside the log of its loss, we use float32 and Flux's eps(Float32); its accuracy takes argmax of "
    "the ReLU outputs, the same as argmax of their softmax (ties, e.g. all outputs zero, go to digit 0 "
    "in both).",
)

RASHID = Recipe(
    name="rashid",
    model=ModelSpec(
        sizes=(784, 200, 10), activations=("sigmoid", "sigmoid"), loss="squared_error", bias=False
    ),
    init=InitSpec("normal_fan_in"),
    optimizer=OptimizerSpec("descent", lr=0.1),
    data=DataSpec(scale="rashid", targets=(0.01, 0.99)),
    batch_size=1,
    epochs=1,
    sampling="sequential",
    rule="rashid",
    published=0.954,
    source="Tariq Rashid, 'Make Your Own Neural Network' (2016), part 2 notebook "
    "part2_neural_network_mnist_data: 784-200-10 sigmoid, per-sample updates",
    notes="Trained with the notebook's own update rule, not the gradient: the error sent back to the hidden "
    "layer is who.T @ (targets - outputs), without the output sigmoid's derivative o(1-o), so the hidden "
    "layer learns several times faster than backprop would let it (0.954 after one epoch with the rule, "
    "about 0.93 with the exact gradient from the same start); only the NumPy backend runs it. No biases; "
    "weights N(0, n_in^-0.5) (the book's later code; its first printing used the layer's own width, "
    "n_out^-0.5); inputs x/255*0.99+0.01 so no input is exactly zero; targets 0.01/0.99 because a sigmoid "
    "never reaches 0 or 1; one sample per step, in file order, no shuffling.",
)

RASHID_ROTATIONS = RASHID.replace(
    name="rashid-rotations",
    data=DataSpec(scale="rashid", targets=(0.01, 0.99), augment="rotate10"),
    published=0.9669,
    source="Tariq Rashid, 'Make Your Own Neural Network', part 3 notebook "
    "part3_neural_network_mnist_data_with_rotations: +-10 degree rotated copies",
    notes="As rashid, and each training image is followed by copies rotated +10 and -10 degrees "
    "(scipy.ndimage.rotate, order=1 bilinear, reshape=False, background cval=0.01), so one epoch is "
    "180000 per-sample steps. lr 0.1, 1 epoch.",
)

RASHID_ROTATIONS_5 = RASHID_ROTATIONS.replace(
    name="rashid-rotations-5",
    optimizer=OptimizerSpec("descent", lr=0.01),
    epochs=5,
    published=0.9745,
    notes="As rashid-rotations with lr 0.01 for 5 epochs (900000 per-sample steps). The article reads 0.9745 "
    "off its plot of accuracy against epochs; the notebook itself prints one run.",
)

RASHID_ROTATIONS_10 = RASHID_ROTATIONS.replace(
    name="rashid-rotations-10",
    optimizer=OptimizerSpec("descent", lr=0.01),
    epochs=10,
    published=0.9787,
    notes="As rashid-rotations with lr 0.01 for 10 epochs (1.8 million per-sample steps); the article's "
    "best point, read off the same plot.",
)

KERAS = Recipe(
    name="keras",
    model=ModelSpec(sizes=(784, 512, 10), activations=("relu", "identity"), loss="crossentropy"),
    init=InitSpec("glorot_uniform"),
    optimizer=OptimizerSpec("rmsprop", lr=1e-3, rho=0.9, eps=1e-7),
    batch_size=128,
    epochs=5,
    sampling="shuffle",
    published=0.9758,
    source="Keras 2.10 Dense network: Dense(512, relu), Dense(10, softmax), RMSprop, "
    "categorical_crossentropy, 5 epochs of batch 128",
    notes="compile(optimizer='rmsprop') takes Keras's defaults, lr 0.001, rho 0.9, epsilon 1e-7 (outside "
    "the square root, as ours), no momentum (the article's text says the default learning rate is 0.01: "
    "it is not). Dense layers start glorot_uniform with zero biases; pixels /255. fit() shuffles every "
    "epoch and keeps the last partial batch (469 steps an epoch). Keras clips probabilities to "
    "[1e-7, 1-1e-7] where Flux adds eps(Float32) inside the log; the difference is below anything "
    "measurable here. The published number is the article's own evaluate() output, test_acc "
    "0.9757999777793884; the sentence after it says the test accuracy is 98.1%, which matches nothing "
    "the article printed (its last training epoch shows 0.9890), so we compare with 0.9758.",
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        FLUX_TUTORIAL,
        TENSORFLOW_TUTORIAL,
        NUMPY_TWOLAYER,
        RASHID,
        RASHID_ROTATIONS,
        RASHID_ROTATIONS_5,
        RASHID_ROTATIONS_10,
        KERAS,
    )
}

#: The recipe every command and the API train when none is named: the Flux tutorial's network.
DEFAULT_RECIPE = FLUX_TUTORIAL.name


def get_recipe(name_or_recipe: str | Recipe) -> Recipe:
    """Look up a recipe by name (a :class:`Recipe` passes through)."""
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    if not isinstance(name_or_recipe, str):
        raise SpecError(f"recipe must be a name or a Recipe, got {name_or_recipe!r}")
    if name_or_recipe not in RECIPES:
        raise unknown_name("recipe", name_or_recipe, RECIPES)
    return RECIPES[name_or_recipe]


#: Fields that describe a recipe rather than change what it trains: never reported as overrides.
_DESCRIPTIVE = ("name", "notes", "source", "published")


def recipe_overrides(recipe: Recipe) -> dict[str, Any]:
    """What ``recipe`` changes in the named recipe it was made from, by the names the options use:
    ``{"hidden": [64], "epochs": 1, "lr": 0.01, "batch_size": 128}``; ``{}`` when nothing is changed or
    the name is not a registered recipe. Computed from the recipe itself, so old model files show theirs.
    """
    base = RECIPES.get(recipe.name)
    if base is None:
        return {}
    changes: dict[str, Any] = {}
    if recipe.model.sizes != base.model.sizes:
        changes["hidden"] = list(recipe.model.sizes[1:-1])
    if (recipe.steps, recipe.epochs) != (base.steps, base.epochs):
        changes.update({"epochs": recipe.epochs} if recipe.epochs else {"steps": recipe.steps})
    if recipe.batch_size != base.batch_size:
        changes["batch_size"] = recipe.batch_size
    if recipe.optimizer.lr != base.optimizer.lr:
        changes["lr"] = recipe.optimizer.lr
    handled = {"model.sizes", "steps", "epochs", "batch_size", "optimizer.lr", *_DESCRIPTIVE}
    ours, theirs = _flat(recipe.to_dict()), _flat(base.to_dict())
    for key, value in ours.items():
        if key not in handled and value != theirs.get(key):
            changes[key] = list(value) if isinstance(value, tuple) else value
    return changes


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def describe_overrides(changes: dict[str, Any]) -> str:
    """``{"hidden": [64], "batch_size": 128}`` → ``"hidden 64, batch size 128"``."""

    def show(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(map(str, value))
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{key.replace('_', ' ')} {show(value)}" for key, value in changes.items())


def recipe_label(recipe: Recipe) -> str:
    """The recipe's name, and what was changed in it: ``"flux-tutorial (hidden 64, lr 0.01)"``."""
    changes = recipe_overrides(recipe)
    return f"{recipe.name} ({describe_overrides(changes)})" if changes else recipe.name


def with_override_notes(recipe: Recipe) -> Recipe:
    """``recipe`` whose ``notes`` first say what was changed, since the registered notes describe the
    recipe as the article ran it (200 full-batch steps of a 32-unit net, say)."""
    changes = recipe_overrides(recipe)
    base = RECIPES.get(recipe.name)
    if not changes or base is None:
        return recipe
    notes = f"Changed here: {describe_overrides(changes)}. The recipe as registered: {base.notes}"
    return recipe.replace(notes=notes)
