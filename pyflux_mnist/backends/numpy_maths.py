"""The NumPy twin of the Flux network's maths: forward, backward and optimisers written out by hand.

It is the reference every other backend is compared against, so the maths is spelled out plainly, and the
functions work in any float dtype (float32 for training, float64 for the gradient checks). Plain functions
only: the NumPy backend (:mod:`.numpy_backend`), its fast trainer (:mod:`.numpy_trainer`), the model file
and back-queries all build on them, and nothing here imports them back.
"""

from __future__ import annotations

import numpy as np

from ..spec import ModelSpec, OptimizerSpec
from .base import CE_EPS, SLOTS, slot_key

# --- activations, each with its derivative written in terms of its output A ---------------------------


def activate(name: str, Z: np.ndarray) -> np.ndarray:
    """Apply the activation in place and return ``Z``."""
    if name == "relu":
        np.maximum(Z, 0, out=Z)
    elif name == "sigmoid":
        sigmoid_(Z)
    elif name == "tanh":
        np.tanh(Z, out=Z)
    return Z


def sigmoid_(Z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-Z))`` in place; the clip keeps exp finite in float32 without changing any
    representable result."""
    np.clip(Z, -88.0, 88.0, out=Z)
    np.negative(Z, out=Z)
    np.exp(Z, out=Z)
    Z += 1
    np.reciprocal(Z, out=Z)
    return Z


def activation_grad(name: str, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
    """dL/dZ from dL/dA, in place in ``dA``. relu'(0) = 0, as NNlib's rule."""
    if name == "relu":
        dA *= A > 0
    elif name == "sigmoid":
        dA *= A * (1 - A)
    elif name == "tanh":
        dA *= 1 - A * A
    return dA


def softmax(Z: np.ndarray) -> np.ndarray:
    """Column-wise softmax ``(classes, N)``, subtracting each column's max first (as NNlib)."""
    E = np.exp(Z - Z.max(axis=0, keepdims=True))
    E /= E.sum(axis=0, keepdims=True)
    return E


# --- forward and backward ----------------------------------------------------------------------------


def forward(spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    """Activations of every layer, ``[X, A1, ..., AL]``; ``AL`` is before any output softmax."""
    acts = [X]
    for layer, name in enumerate(spec.activations):
        W, b = params[2 * layer], params[2 * layer + 1]
        Z = W @ acts[-1]  # (out, N)
        Z += b[:, None]
        acts.append(activate(name, Z))
    return acts


def output(spec: ModelSpec, AL: np.ndarray) -> np.ndarray:
    """What the network outputs: probabilities for the cross-entropy losses, else the last activation."""
    return AL if spec.loss == "squared_error" else softmax(AL)


def probabilities(spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    return output(spec, forward(spec, params, X)[-1])


def loss_and_output_grad(
    spec: ModelSpec, AL: np.ndarray, Y: np.ndarray, n: int | None = None
) -> tuple[float, np.ndarray]:
    """The loss (mean over samples) and dL/dAL, for each loss as Flux defines it. ``n``: the samples the
    mean is over, when ``AL`` is one block of a bigger batch (default: ``AL``'s columns)."""
    n = AL.shape[1] if n is None else n
    if spec.loss == "crossentropy":
        P = softmax(AL)
        Pe = P + AL.dtype.type(CE_EPS)
        loss = -float(np.sum(Y * np.log(Pe), dtype=np.float64)) / n
        G = Y / Pe  # -dL/dP * n
        # Through the softmax: dZ = P * (g - Σ P g), with g = dL/dP = -G / n.
        G -= np.sum(P * G, axis=0, keepdims=True)
        G *= P
        G *= AL.dtype.type(-1.0 / n)
        return loss, G
    if spec.loss == "logitcrossentropy":
        shifted = AL - AL.max(axis=0, keepdims=True)
        logZ = np.log(np.sum(np.exp(shifted), axis=0, keepdims=True))
        logP = shifted - logZ
        loss = -float(np.sum(Y * logP, dtype=np.float64)) / n
        G = np.exp(logP) * Y.sum(axis=0, keepdims=True) - Y
        G *= AL.dtype.type(1.0 / n)
        return loss, G
    # squared_error: mean over samples of ½ Σ (ŷ - y)²
    D = AL - Y
    loss = 0.5 * float(np.sum(D * D, dtype=np.float64)) / n
    D *= AL.dtype.type(1.0 / n)
    return loss, D


def loss_and_grads(
    spec: ModelSpec, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray
) -> tuple[float, list[np.ndarray]]:
    """The loss on ``(X, Y)`` and its gradient for every parameter (backprop, written out)."""
    acts = forward(spec, params, X)
    loss, dA = loss_and_output_grad(spec, acts[-1], Y)
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for layer in reversed(range(spec.n_layers)):
        dZ = activation_grad(spec.activations[layer], acts[layer + 1], dA)  # (out, N)
        grads[2 * layer] = dZ @ acts[layer].T  # (out, in)
        grads[2 * layer + 1] = dZ.sum(axis=1) if spec.bias else np.zeros_like(params[2 * layer + 1])
        if layer > 0:
            dA = params[2 * layer].T @ dZ  # (in, N)
    return loss, grads


# --- optimisers (Optimisers.jl's formulas, in the parameters' dtype) ---------------------------------


def beta_powers(b1: np.floating, b2: np.floating, t: int) -> tuple[np.floating, np.floating]:
    """β1^t and β2^t as Optimisers.jl holds them after ``t`` Adam steps: a running product in the betas'
    own precision (``b ** t`` rounds differently), so that a resumed run continues bit for bit."""
    b1t, b2t = type(b1)(1), type(b2)(1)
    for _ in range(t):
        b1t, b2t = b1t * b1, b2t * b2
    return b1t, b2t


class Optimizer:
    """Adam, Descent or RMSprop, updating parameters in place with preallocated state."""

    def __init__(self, spec: OptimizerSpec, params: list[np.ndarray]) -> None:
        self.spec = spec
        self.t = 0
        dtype = params[0].dtype.type
        self.lr, self.b1, self.b2 = dtype(spec.lr), dtype(spec.beta1), dtype(spec.beta2)
        self.rho, self.eps = dtype(spec.rho), dtype(spec.eps)
        # Optimisers.jl keeps β^t as a running product in the parameters' precision.
        self.b1t, self.b2t = dtype(1), dtype(1)
        self.slots = {slot: [np.zeros_like(p) for p in params] for slot in SLOTS[spec.name]}
        self._tmp = [np.empty_like(p) for p in params]

    def update(self, params: list[np.ndarray], grads: list[np.ndarray], trainable: list[bool]) -> None:
        self.t += 1
        name = self.spec.name
        if name == "adam":
            self.b1t *= self.b1
            self.b2t *= self.b2
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if not trainable[i]:
                continue
            tmp = self._tmp[i]
            if name == "descent":
                np.multiply(g, self.lr, out=tmp)
            elif name == "adam":
                m, v = self.slots["m"][i], self.slots["v"][i]
                m *= self.b1
                m += (1 - self.b1) * g
                v *= self.b2
                np.multiply(g, g, out=tmp)
                tmp *= 1 - self.b2
                v += tmp
                # Δ = m / (1 - β1^t) / (sqrt(v / (1 - β2^t)) + ε) * η
                np.divide(v, 1 - self.b2t, out=tmp)
                np.sqrt(tmp, out=tmp)
                tmp += self.eps
                np.divide(m, tmp, out=tmp)
                tmp *= self.lr / (1 - self.b1t)
            else:  # rmsprop: acc = ρ acc + (1-ρ) g²; Δ = η g / (sqrt(acc) + ε)
                acc = self.slots["acc"][i]
                acc *= self.rho
                np.multiply(g, g, out=tmp)
                tmp *= 1 - self.rho
                acc += tmp
                np.sqrt(acc, out=tmp)
                tmp += self.eps
                np.divide(g, tmp, out=tmp)
                tmp *= self.lr
            p -= tmp

    def state(self) -> dict[str, np.ndarray]:
        state = {"t": np.array(self.t, dtype=np.int64)}
        for slot, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                state[slot_key(slot, i)] = a.copy()
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        self.b1t, self.b2t = beta_powers(self.b1, self.b2, self.t)
        for slot, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                a[...] = state[slot_key(slot, i)]
