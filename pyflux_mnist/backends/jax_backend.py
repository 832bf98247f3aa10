"""JAX: one whole training step — forward, ``jax.value_and_grad``, the optimiser update — compiled by
``jax.jit`` into one XLA program, with Flux's semantics written in ``jax.numpy``: Adam's ε outside the
square root and β^t kept as a running product in float32 (Optimisers.jl), cross-entropy with eps(Float32)
inside the log. It must give the NumPy backend's losses (the parity tests check), so the maths is the
reference's, laid out on ``(N, 784)`` rows as XLA likes them.

The first step compiles (``bench`` reports it apart, as the set-up's first step); a minibatch recipe whose
last batch is smaller compiles once more for that size.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ..spec import ModelSpec, OptimizerSpec, Recipe
from .base import CE_EPS, SLOTS, Backend, Trainer, slot_key
from .numpy_maths import beta_powers

Params = tuple[Any, ...]  # (W1, b1, W2, b2, ...) jax arrays, W (out, in)


def _jax() -> ModuleType:
    import jax  # here, not at the top: importing jax takes seconds, and only this backend needs it

    return jax


def output_layer(spec: ModelSpec, params: Params, X: Any) -> Any:
    """The last layer's activations ``(N, out)`` for rows ``X`` ``(N, in)``, before any softmax."""
    jax = _jax()
    acts: dict[str, Callable[[Any], Any]] = {
        "relu": jax.nn.relu,  # relu'(0) = 0, as NNlib's rule
        "sigmoid": jax.nn.sigmoid,
        "tanh": jax.numpy.tanh,
        "identity": lambda z: z,
    }
    A = X
    for layer, name in enumerate(spec.activations):
        A = acts[name](A @ params[2 * layer].T + params[2 * layer + 1])  # (N, out)
    return A


def loss(spec: ModelSpec, params: Params, X: Any, Y: Any) -> Any:
    """The loss as Flux defines it (mean over the batch's samples), on rows ``X`` and targets ``Y``."""
    jax = _jax()
    jnp = jax.numpy
    AL = output_layer(spec, params, X)
    n = AL.shape[0]
    if spec.loss == "crossentropy":
        return -jnp.sum(Y * jnp.log(jax.nn.softmax(AL, axis=1) + CE_EPS)) / n
    if spec.loss == "logitcrossentropy":
        return -jnp.sum(Y * jax.nn.log_softmax(AL, axis=1)) / n
    return 0.5 * jnp.sum((AL - Y) ** 2) / n


def update(
    opt: OptimizerSpec, params: Params, grads: Params, state: dict[str, Any], trainable: tuple[bool, ...]
) -> tuple[Params, dict[str, Any]]:
    """One step of Optimisers.jl's rule, in float32: the NumPy backend's ``Optimizer.update``, as a pure
    function of ``(params, grads, state)``."""
    jnp = _jax().numpy
    f32 = jnp.float32
    lr, b1, b2, rho, eps = (f32(x) for x in (opt.lr, opt.beta1, opt.beta2, opt.rho, opt.eps))
    state = dict(state)
    if opt.name == "adam":
        state["b1t"], state["b2t"] = state["b1t"] * b1, state["b2t"] * b2
    new = list(params)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if not trainable[i]:
            continue
        if opt.name == "adam":
            m = b1 * state[slot_key("m", i)] + (1 - b1) * g
            v = b2 * state[slot_key("v", i)] + (1 - b2) * (g * g)
            state[slot_key("m", i)], state[slot_key("v", i)] = m, v
            # Δ = m / (1 - β1^t) / (sqrt(v / (1 - β2^t)) + ε) * η
            delta = m / (jnp.sqrt(v / (1 - state["b2t"])) + eps) * (lr / (1 - state["b1t"]))
        elif opt.name == "rmsprop":  # acc = ρ acc + (1-ρ) g²; Δ = η g / (sqrt(acc) + ε)
            acc = rho * state[slot_key("acc", i)] + (1 - rho) * (g * g)
            state[slot_key("acc", i)] = acc
            delta = g / (jnp.sqrt(acc) + eps) * lr
        else:  # descent
            delta = g * lr
        new[i] = p - delta
    return tuple(new), state


class JaxTrainer(Trainer):
    """Parameters and optimiser state live as JAX arrays; each step is one call of the compiled program."""

    def __init__(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        jax = _jax()
        jnp = jax.numpy
        spec, opt = recipe.model, recipe.optimizer
        self.opt = opt
        self.params: Params = tuple(jnp.asarray(np.asarray(p, dtype=np.float32)) for p in params)
        self.state = self._fresh_state(0)
        self._X = jnp.asarray(np.ascontiguousarray(X.T))  # (N, 784) rows
        self._Y = jnp.asarray(np.ascontiguousarray(Y.T))  # (N, 10)
        trainable = tuple([True, spec.bias] * spec.n_layers)

        def step(params: Params, state: dict[str, Any], X: Any, Y: Any) -> tuple[Any, Params, dict]:
            value, grads = jax.value_and_grad(lambda p: loss(spec, p, X, Y))(params)
            params, state = update(opt, params, grads, state, trainable)
            return value, params, state

        self._full = jax.jit(step)
        # A minibatch: gather its rows inside the compiled program.
        self._mini = jax.jit(lambda p, s, X, Y, idx: step(p, s, X[idx], Y[idx]))

    def _fresh_state(self, t: int) -> dict[str, Any]:
        jnp = _jax().numpy
        b1t, b2t = beta_powers(np.float32(self.opt.beta1), np.float32(self.opt.beta2), t)
        state: dict[str, Any] = {"b1t": jnp.float32(b1t), "b2t": jnp.float32(b2t)}
        for slot in SLOTS[self.opt.name]:
            for i, p in enumerate(self.params):
                state[slot_key(slot, i)] = jnp.zeros_like(p)
        self.t = t
        return state

    def step(self, batch: np.ndarray | None) -> float:
        if batch is None:
            value, self.params, self.state = self._full(self.params, self.state, self._X, self._Y)
        else:
            value, self.params, self.state = self._mini(self.params, self.state, self._X, self._Y, batch)
        self.t += 1
        return float(value)

    def parameters(self) -> list[np.ndarray]:
        return [np.array(p, dtype=np.float32) for p in self.params]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        state = {"t": np.array(self.t, dtype=np.int64)}
        for slot in SLOTS[self.opt.name]:
            for i in range(len(self.params)):
                state[slot_key(slot, i)] = np.array(self.state[slot_key(slot, i)], dtype=np.float32)
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        jnp = _jax().numpy
        self.state = self._fresh_state(int(state["t"]))
        for slot in SLOTS[self.opt.name]:
            for i in range(len(self.params)):
                key = slot_key(slot, i)
                self.state[key] = jnp.asarray(np.asarray(state[key], dtype=np.float32))


class JaxBackend(Backend):
    name = "jax"
    library = "jax"
    distribution = "jax"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("jax") is None:
            return "JAX is not installed: pip install 'pyflux-mnist[jax]'"
        return None

    def version(self) -> str:
        jax = _jax()
        return f"jax {jax.__version__} ({jax.default_backend()})"

    def threads(self) -> dict[str, int | str]:
        """XLA's CPU client runs its own thread pool, sized from the CPUs it sees (not pinned here)."""
        return {"XLA (own pool)": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"}

    def _trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        return JaxTrainer(recipe, params, X, Y)

    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        jax = _jax()
        rows = jax.numpy.asarray(np.ascontiguousarray(X.T))
        out = output_layer(spec, tuple(jax.numpy.asarray(p) for p in params), rows)
        if spec.loss != "squared_error":
            out = jax.nn.softmax(out, axis=1)
        return np.asarray(out).T
