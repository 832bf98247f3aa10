"""The named recipes: the Flux tutorial network and the four other tutorials this project reproduces.

Each is written from the article's code (copies in ``shared/tutorials/``), quirks included; ``notes`` says
what each quirk does and what we had to interpret.
"""

from __future__ import annotations

from .errors import SpecError
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
    notes="Full batch: every one of the 200 steps sees all 60000 training images. The article prints "
    "loss(X, Y) at most every 10 s (throttle) and reports no test accuracy.",
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
    notes="The article defines no activation functions, so the four layers compose to one linear map: "
    "the network is a softmax regression with a deep parameterisation. Its dropout is defined but never "
    "applied to the output, so we leave it out. TF's read_data_sets held the first 5000 training images "
    "out as validation; we train on the other 55000.",
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
    notes="Quirks kept: raw 0-255 pixels (never scaled), and a ReLU after the output layer before the "
    "softmax, which can kill a class for good when its output unit goes negative for every input (an "
    "unlucky seed then loses whole digits). Batches of 100 are drawn with replacement (np.random.choice); "
    "5 x 600 steps.",
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
    published=0.954,
    source="Tariq Rashid, 'Make Your Own Neural Network': 784-200-10 sigmoid network, per-sample SGD",
    notes="No biases; weights N(0, n_in^-0.5); inputs x/255*0.99+0.01 so no input is exactly zero; "
    "targets 0.01/0.99 because a sigmoid never reaches 0 or 1; one sample per step, in file order.",
)

RASHID_ROTATIONS = RASHID.replace(
    name="rashid-rotations",
    data=DataSpec(scale="rashid", targets=(0.01, 0.99), augment="rotate10"),
    published=0.9669,
    source="Tariq Rashid, 'Make Your Own Neural Network', part 3: training on +-10 degree rotated copies",
    notes="Each training image is followed by copies rotated +10 and -10 degrees (bilinear, background "
    "0.01), so one epoch is 180000 per-sample steps. lr 0.1, 1 epoch.",
)

RASHID_ROTATIONS_5 = RASHID_ROTATIONS.replace(
    name="rashid-rotations-5",
    optimizer=OptimizerSpec("descent", lr=0.01),
    epochs=5,
    published=0.9745,
    notes="As rashid-rotations with lr 0.01 for 5 epochs.",
)

RASHID_ROTATIONS_10 = RASHID_ROTATIONS.replace(
    name="rashid-rotations-10",
    optimizer=OptimizerSpec("descent", lr=0.01),
    epochs=10,
    published=0.9787,
    notes="As rashid-rotations with lr 0.01 for 10 epochs.",
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
    notes="Keras shuffles every epoch and keeps the last partial batch (469 steps an epoch). Keras clips "
    "probabilities to [1e-7, 1-1e-7] where Flux adds eps(Float32) inside the log; the difference is "
    "below anything measurable here.",
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


def get_recipe(name_or_recipe: str | Recipe) -> Recipe:
    """Look up a recipe by name (a :class:`Recipe` passes through)."""
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    try:
        return RECIPES[name_or_recipe]
    except KeyError:
        raise SpecError(f"unknown recipe {name_or_recipe!r}; choose one of: {', '.join(RECIPES)}") from None
