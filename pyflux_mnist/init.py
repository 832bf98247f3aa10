"""What a run starts from: initial weights and batch order, drawn in NumPy from one seed, so every backend
starts from the same numbers and sees the same batches.

(NumPy cannot reproduce Julia's or PyTorch's random streams; injecting the weights is what makes the
backends comparable step for step.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .prepare import Schedule, schedule
from .spec import InitSpec, ModelSpec, Recipe


class RunStart(NamedTuple):
    params: list[np.ndarray]  # [W1, b1, ...] float32, W (out, in)
    schedule: Schedule  # the batch order


def run_start(recipe: Recipe, n_samples: int, seed: int) -> RunStart:
    """The initial weights and batch schedule of a run of ``recipe`` on ``n_samples`` with ``seed``.

    One seed drives both random streams, kept apart so that changing the batch order never changes the
    initial weights. Training, the benchmark's workers and the parity tests all start here.
    """
    init_seq, batch_seq = np.random.SeedSequence(seed).spawn(2)
    params = init_params(recipe.model, recipe.init, np.random.default_rng(init_seq))
    return RunStart(params, schedule(recipe, n_samples, batch_seq))


def init_params(spec: ModelSpec, init: InitSpec, rng: np.random.Generator) -> list[np.ndarray]:
    """``[W1, b1, W2, b2, ...]`` float32, ``W`` of shape ``(out, in)``."""
    params: list[np.ndarray] = []
    for (fan_out, fan_in), bias_shape in spec.shapes:
        params.append(_weights(init, fan_out, fan_in, rng))
        params.append(np.full(bias_shape, init.bias if spec.bias else 0.0, dtype=np.float32))
    return params


def _weights(init: InitSpec, fan_out: int, fan_in: int, rng: np.random.Generator) -> np.ndarray:
    shape = (fan_out, fan_in)
    if init.weights == "glorot_uniform":
        # Flux's formula: (rand(Float32) - 0.5) * sqrt(24 / (fan_in + fan_out)), i.e. U(-s, s) with
        # s = sqrt(6 / (fan_in + fan_out)); Keras's glorot_uniform has the same limit.
        W = rng.random(shape, dtype=np.float32) - np.float32(0.5)
        W *= np.float32(np.sqrt(24.0 / (fan_in + fan_out)))
        return W
    if init.weights == "normal":
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(init.std)).astype(np.float32)
    if init.weights == "normal_fan_in":  # Rashid: N(0, fan_in^-0.5)
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(fan_in**-0.5)
    # truncated_normal: TensorFlow redraws every value more than two standard deviations out.
    W = rng.standard_normal(shape, dtype=np.float32)
    bad = np.abs(W) > 2
    while bad.any():
        W[bad] = rng.standard_normal(int(bad.sum()), dtype=np.float32)
        bad = np.abs(W) > 2
    return W * np.float32(init.std)
