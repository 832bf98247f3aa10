"""A small declarative description of an MLP and how to train it.

Every backend (NumPy, Flux, PyTorch) trains exactly what a :class:`Recipe` says, so the same recipe gives
the same numbers everywhere. Python owns everything that is not the network's arithmetic: data scaling,
augmentation, initial weights and the order of the minibatches. Backends only do forward, backward and the
optimiser update.

Conventions (the ones Flux uses, so weights move between backends unchanged):

* A layer is ``y = act.(W * x .+ b)`` with ``W`` of shape ``(out, in)`` and samples in columns: ``x`` is
  ``(in, N)``.
* ``loss="crossentropy"``: the network's output is ``softmax(last layer)`` and the loss is
  ``Flux.crossentropy``: mean over samples of ``-Σ y·log(ŷ + eps(Float32))``.
* ``loss="logitcrossentropy"``: the last layer gives logits, the loss is ``Flux.logitcrossentropy``:
  mean over samples of ``-Σ y·logsoftmax(z)``; probabilities are ``softmax(z)``.
* ``loss="squared_error"``: the last layer's activation is the output, the loss is mean over samples of
  ``½ Σ (ŷ - y)²`` (the gradient Rashid's tutorial applies by hand).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SpecError, unknown_name

ACTIVATIONS = ("relu", "sigmoid", "tanh", "identity")
LOSSES = ("crossentropy", "logitcrossentropy", "squared_error")
INITS = ("glorot_uniform", "normal", "truncated_normal", "normal_fan_in")
OPTIMIZERS = ("adam", "descent", "rmsprop")
#: Pixel scalings: a pixel's value v in 0..255 becomes ``v * k + c`` with ``(k, c) = PIXEL_SCALE[scale]``
#: (unit: v/255; raw: 0..255 as floats; rashid: v/255*0.99 + 0.01, so no input is exactly zero).
PIXEL_SCALE: dict[str, tuple[float, float]] = {
    "unit": (1 / 255, 0.0),
    "raw": (1.0, 0.0),
    "rashid": (0.99 / 255, 0.01),
}
SCALES = tuple(PIXEL_SCALE)
SPLITS = ("train", "train-55k")
AUGMENTS = ("none", "rotate10")
SAMPLINGS = ("shuffle", "replacement", "sequential")
#: How the weights are updated: "backprop" (the gradient of the loss, via the optimiser) or "rashid" (Tariq
#: Rashid's hand-derived rule: each layer's error is passed back as ``Wᵀ · error`` without the derivative of
#: the layer above, see :mod:`pyflux_mnist.backends.rashid`).
RULES = ("backprop", "rashid")

#: Upper bound on any layer width we accept, so a hostile spec cannot ask for terabytes.
MAX_WIDTH = 65536
#: Upper bound on a network's parameters (256 MiB of float32; 784-65536-10 fits): widths alone would allow
#: 784-65536-65536-...-10, gigabytes per layer, which a model file could name to make a loader allocate them.
MAX_PARAMETERS = 1 << 26
#: Upper bound on the Dense layers (the deepest recipe has 4): it bounds the entries a model file or
#: checkpoint may hold, which are counted before anything in such a file is read.
MAX_LAYERS = 32
#: The most steps (or epochs, or samples per batch) a recipe may ask for: a run's loss curve alone is 8
#: bytes a step, and a worker draws its batches up front.
MAX_STEPS = 10_000_000


@dataclass(frozen=True)
class ModelSpec:
    """The network: layer widths, one activation per Dense layer, the output/loss pairing."""

    sizes: tuple[int, ...] = (784, 32, 10)  # input, hidden..., output
    activations: tuple[str, ...] = ("relu", "identity")  # one per Dense layer
    loss: str = "crossentropy"  # see the module docstring
    bias: bool = True  # False: biases stay at zero and are never trained (Rashid's network has none)

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activations", tuple(self.activations))
        if len(sizes) < 2:
            raise SpecError(f"a model needs at least an input and an output size, got {sizes}")
        if sizes[0] != 784 or sizes[-1] != 10:
            raise SpecError(f"an MNIST model maps 784 pixels to 10 classes, got sizes {sizes}")
        if len(sizes) - 1 > MAX_LAYERS:
            raise SpecError(f"a network may have at most {MAX_LAYERS} layers, got {len(sizes) - 1}")
        if any(not 1 <= s <= MAX_WIDTH for s in sizes):
            raise SpecError(f"layer sizes must be between 1 and {MAX_WIDTH}, got {sizes}")
        n_params = sum(o * i + o for i, o in itertools.pairwise(sizes))
        if n_params > MAX_PARAMETERS:
            raise SpecError(
                f"a {'-'.join(map(str, sizes))} network has {n_params:,} parameters; the most this package "
                f"handles is {MAX_PARAMETERS:,} ({MAX_PARAMETERS * 4 >> 20} MiB of float32)"
            )
        if len(self.activations) != len(sizes) - 1:
            raise SpecError(
                f"{len(sizes) - 1} layers need {len(sizes) - 1} activations, got {len(self.activations)}"
            )
        for act in self.activations:
            _check_choice("activation", act, ACTIVATIONS)
        _check_choice("loss", self.loss, LOSSES)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def shapes(self) -> list[tuple[tuple[int, int], tuple[int]]]:
        """``[((out, in), (out,)), ...]``: the weight and bias shape of each layer."""
        return [((o, i), (o,)) for i, o in zip(self.sizes[:-1], self.sizes[1:])]

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        """The shape of each parameter in order, ``[W1, b1, W2, b2, ...]``: what a model file holds."""
        return [shape for pair in self.shapes for shape in pair]

    @property
    def n_params(self) -> int:
        return sum(o * i + o for (o, i), _ in self.shapes)


@dataclass(frozen=True)
class InitSpec:
    """How the first weights are drawn (NumPy's generator, from the recipe's seed)."""

    weights: str = "glorot_uniform"  # Flux/Keras: U(-s, s), s = sqrt(6 / (fan_in + fan_out))
    std: float = 0.0  # for "normal" and "truncated_normal" (resampled beyond 2 std, as TensorFlow)
    bias: float = 0.0  # every bias starts at this value

    def __post_init__(self) -> None:
        _check_choice("initialiser", self.weights, INITS)
        if self.weights in ("normal", "truncated_normal") and not self.std > 0:
            raise SpecError(f"initialiser {self.weights!r} needs std > 0, got {self.std}")


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam, Descent (plain SGD) or RMSprop, with Optimisers.jl's formulas (ε outside the square root)."""

    name: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    rho: float = 0.9  # rmsprop
    eps: float = 1e-8  # adam, rmsprop

    def __post_init__(self) -> None:
        _check_choice("optimiser", self.name, OPTIMIZERS)
        if not 0 < self.lr < float("inf"):
            raise SpecError(f"learning rate must be a positive number, got {self.lr}")
        for name in ("beta1", "beta2", "rho"):
            if not 0 <= getattr(self, name) < 1:
                raise SpecError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.eps > 0:
            raise SpecError(f"eps must be positive, got {self.eps}")


@dataclass(frozen=True)
class DataSpec:
    """How MNIST is turned into network inputs and targets (shared by every backend)."""

    scale: str = "unit"  # unit: x/255; raw: 0..255 as floats; rashid: x/255*0.99 + 0.01
    targets: tuple[float, float] = (0.0, 1.0)  # (off, on) values of the one-hot targets
    train_split: str = "train"  # train: all 60000; train-55k: drop the first 5000 (TF's validation set)
    augment: str = "none"  # rotate10: each image is followed by copies rotated +10° and -10°

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))
        _check_choice("scale", self.scale, SCALES)
        _check_choice("train split", self.train_split, SPLITS)
        _check_choice("augmentation", self.augment, AUGMENTS)


@dataclass(frozen=True)
class Recipe:
    """Everything needed to reproduce one training run: network, init, optimiser, data, schedule."""

    name: str
    model: ModelSpec = field(default_factory=ModelSpec)
    init: InitSpec = field(default_factory=InitSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    data: DataSpec = field(default_factory=DataSpec)
    batch_size: int = 0  # 0: full batch (every training image in every step)
    steps: int = 200  # used when epochs == 0
    epochs: int = 0  # > 0: passes over the training set instead of a step count
    sampling: str = "shuffle"  # shuffle each epoch | replacement (random draws) | sequential (in order)
    rule: str = "backprop"  # backprop | rashid (see RULES)
    published: float | None = None  # the article's test accuracy
    source: str = ""  # one-line reference to the article
    notes: str = ""  # what the article did and what we interpreted

    def __post_init__(self) -> None:
        # A recipe also comes from a file's metadata: every field must be of its type (a dict as a name
        # would otherwise be printed as one).
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 200 or not self.name.isprintable():
            raise SpecError(
                f"a recipe name must be a printable string of 1 to 200 characters, got {self.name!r:.80}"
            )
        for name in ("source", "notes"):
            if not isinstance(getattr(self, name), str):
                raise SpecError(f"recipe {name} must be a string, got {type(getattr(self, name)).__name__}")
        if self.published is not None and (
            isinstance(self.published, bool) or not isinstance(self.published, (int, float))
        ):
            raise SpecError(
                f"recipe published accuracy must be a number, got {type(self.published).__name__}"
            )
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("update rule", self.rule, RULES)
        if self.rule == "rashid" and not (
            self.optimizer.name == "descent"
            and self.model.loss == "squared_error"
            and set(self.model.activations) == {"sigmoid"}
            and not self.model.bias
        ):
            raise SpecError(
                "the rashid update rule is defined for all-sigmoid networks without biases, with "
                "squared error and plain descent"
            )
        batch_size = whole_number("batch_size", self.batch_size)
        if not 0 <= batch_size <= MAX_STEPS:
            raise SpecError(
                f"batch size must be between 0 (full batch) and the number of samples, got {batch_size}"
            )
        object.__setattr__(self, "batch_size", batch_size)
        for name in ("steps", "epochs"):
            object.__setattr__(self, name, check_count(name, getattr(self, name)))
        if self.steps == 0 and self.epochs == 0:
            raise SpecError("a recipe needs steps > 0 or epochs > 0")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed; nested specs accept dicts of their own fields."""
        for key in ("model", "init", "optimizer", "data"):
            if isinstance(changes.get(key), dict):
                changes[key] = dataclasses.replace(getattr(self, key), **changes[key])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Rebuild a recipe from :meth:`to_dict` output, refusing unknown or malformed fields."""
        if not isinstance(d, dict):
            raise SpecError("a recipe must be a JSON object")
        try:
            parts: dict[str, Any] = {
                "model": ModelSpec(**_fields(ModelSpec, d.get("model", {}))),
                "init": InitSpec(**_fields(InitSpec, d.get("init", {}))),
                "optimizer": OptimizerSpec(**_fields(OptimizerSpec, d.get("optimizer", {}))),
                "data": DataSpec(**_fields(DataSpec, d.get("data", {}))),
            }
            top = _fields(cls, {k: v for k, v in d.items() if k not in parts})
            return cls(**top, **parts)
        except TypeError as e:
            raise SpecError(f"malformed recipe: {e}") from None


def _fields(cls: type, d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"{cls.__name__} must be a JSON object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise SpecError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def whole_number(name: str, value: object) -> int:
    """``value`` if it is an integer (not a bool, not a string of digits), else the package's one line."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def check_count(name: str, value: object, low: int = 0) -> int:
    """A step or epoch count: a whole number from ``low`` to :data:`MAX_STEPS` (an override asks for at
    least 1; a recipe may leave one of the two at 0)."""
    value = whole_number(name, value)
    if not low <= value <= MAX_STEPS:
        what = "a positive" if low else "a non-negative"
        raise SpecError(f"{name} must be {what} integer up to {MAX_STEPS}, got {value}")
    return value


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise unknown_name(what, value, choices)
