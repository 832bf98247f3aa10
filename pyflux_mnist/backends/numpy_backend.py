"""The NumPy twin of the Flux network: forward, backward and optimisers written out by hand.

It is the reference every other backend is compared against, so the maths is spelled out plainly, and the
functions work in any float dtype (float32 for training, float64 for the gradient checks).
"""

from __future__ import annotations

import numpy as np

from ..spec import ModelSpec, OptimizerSpec, Recipe
from .base import Backend, Trainer

# Flux.crossentropy adds eps(Float32) inside the log, also for Float64 inputs built from Float32 models.
CE_EPS = float(np.finfo(np.float32).eps)


# --- activations, each with its derivative written in terms of its output A ---------------------------


def activate(name: str, Z: np.ndarray) -> np.ndarray:
    """Apply the activation in place and return ``Z``."""
    if name == "relu":
        np.maximum(Z, 0, out=Z)
    elif name == "sigmoid":
        # 1 / (1 + exp(-z)); clip keeps exp finite in float32 without changing any representable result.
        np.clip(Z, -88.0, 88.0, out=Z)
        np.negative(Z, out=Z)
        np.exp(Z, out=Z)
        Z += 1
        np.reciprocal(Z, out=Z)
    elif name == "tanh":
        np.tanh(Z, out=Z)
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


def loss_and_output_grad(spec: ModelSpec, AL: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss (mean over samples) and dL/dAL, for each loss as Flux defines it."""
    n = AL.shape[1]
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
        self.slots: dict[str, list[np.ndarray]] = {}
        if spec.name == "adam":
            self.slots = {"m": [np.zeros_like(p) for p in params], "v": [np.zeros_like(p) for p in params]}
        elif spec.name == "rmsprop":
            self.slots = {"acc": [np.zeros_like(p) for p in params]}
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
                state[f"{slot}/{i}"] = a.copy()
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        dtype = type(self.b1)
        self.b1t, self.b2t = dtype(1), dtype(1)
        for _ in range(self.t):  # the same running product Optimisers.jl keeps
            self.b1t *= self.b1
            self.b2t *= self.b2
        for slot, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                a[...] = state[f"{slot}/{i}"]


# --- the trainers -----------------------------------------------------------------------------------


class ReferenceTrainer(Trainer):
    """Training written the plain way: :func:`loss_and_grads`, then :class:`Optimizer`. It allocates every
    intermediate anew and is slow; :class:`NumpyTrainer` must give the same losses (the tests check)."""

    def __init__(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        self.spec = recipe.model
        self.params = [np.array(p, dtype=np.float32, copy=True) for p in params]
        self.X, self.Y = X, Y
        # Row-major views of the (feature, sample) data: gathering a batch copies whole rows.
        self._X_rows, self._Y_rows = X.T, Y.T
        self.optimizer = Optimizer(recipe.optimizer, self.params)
        self.trainable = [True, self.spec.bias] * self.spec.n_layers

    def _batch(self, batch: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if batch is None:
            return self.X, self.Y
        # (B, 784) contiguous copy of the chosen samples, then the (784, B) view.
        return np.take(self._X_rows, batch, axis=0).T, np.take(self._Y_rows, batch, axis=0).T

    def step(self, batch: np.ndarray | None) -> float:
        X, Y = self._batch(batch)
        # Overflow shows up as a NaN/Inf loss, which the training loop reports as divergence.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, grads = loss_and_grads(self.spec, self.params, X, Y)
            self.optimizer.update(self.params, grads, self.trainable)
        return loss

    def parameters(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self.optimizer.state()

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state(state)


class _Buffers:
    """Every intermediate array of one step at one batch size, allocated once."""

    def __init__(self, sizes: tuple[int, ...], b: int, gather: bool) -> None:
        f32 = np.float32
        self.x = np.empty((b, sizes[0]), f32) if gather else None  # gathered samples, rows
        self.y = np.empty((b, sizes[-1]), f32) if gather else None
        self.z = [np.empty((out, b), f32) for out in sizes[1:]]  # pre-activations, then activations
        self.da = [np.empty((width, b), f32) for width in sizes[1:-1]]  # dL/dA of the hidden layers
        self.mask = [np.empty((out, b), bool) for out in sizes[1:]]
        self.tmp = [np.empty((out, b), f32) for out in sizes[1:]]
        self.p = np.empty((sizes[-1], b), f32)  # output-layer scratch
        self.g = np.empty((sizes[-1], b), f32)
        self.col = np.empty((1, b), f32)


class NumpyTrainer(Trainer):
    """The NumPy backend's trainer: the same arithmetic as :class:`ReferenceTrainer`, in float32, with every
    buffer allocated once and every update in place.

    Three things make it faster without changing the maths (docs/benchmarks.md has the measurements):

    * **Pixels that are zero in every training sample** (67 of 784 in MNIST with ``unit`` or ``raw`` scaling)
      contribute exactly zero to ``W1 @ X`` and get exactly zero gradient, hence exactly zero update from
      Adam, RMSprop and Descent (their state starts at zero and stays there). We leave them out of the
      arithmetic: ``W1``'s used columns and the used rows of ``X`` are kept as compact copies, and
      :meth:`parameters` puts the untouched columns back. The sums in the matrix products then run over
      fewer (only zero) terms, so results agree with the reference to float32 rounding, not bit for bit.
    * **No allocation per step**: batches are gathered with ``np.take(..., out=)``, products written with
      ``np.matmul(..., out=)``, and a batch of one sample is a view, not a copy.
    * **Layouts chosen per recipe**: full-batch recipes keep ``X`` as ``(features, N)`` C-ordered and compute
      weight gradients as ``A_prev @ dZᵀ``; minibatch recipes keep rows for gathering. ReLU keeps its mask.
    """

    def __init__(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        self.recipe = recipe
        self.spec = recipe.model
        self._X_rows, self._Y_rows = X.T, Y.T  # (N, 784) and (N, 10) C-contiguous for prepared data
        used = self._X_rows.any(axis=0)
        self._setup(params, None if used.all() else np.flatnonzero(used))

    def _setup(self, params: list[np.ndarray], active: np.ndarray | None) -> None:
        spec = self.spec
        self.active = active
        self._full_W1 = np.array(params[0], dtype=np.float32, copy=True)  # holds the columns we never touch
        self.params = [np.array(p, dtype=np.float32, copy=True) for p in params]
        if active is not None:
            self.params[0] = np.ascontiguousarray(self.params[0][:, active])
        if self.recipe.batch_size == 0:
            # Every step takes the full batch: keep (features, N) C-ordered, where W @ X runs ~15 % faster
            # than on the transposed rows (measured: 33 vs 39 ms for the tutorial's first layer).
            X = self._X_rows.T
            self._full = np.ascontiguousarray(X if active is None else X[active])
            self._full_y = np.ascontiguousarray(self._Y_rows.T)
            self._rows = self._ys = None
        else:  # minibatches gather whole rows
            self._rows = np.ascontiguousarray(self._X_rows if active is None else self._X_rows[:, active])
            self._ys = np.ascontiguousarray(self._Y_rows)
            self._full, self._full_y = self._rows.T, self._ys.T
        self.sizes = (self._full.shape[0], *spec.sizes[1:])
        self.optimizer = Optimizer(self.recipe.optimizer, self.params)
        self.trainable = [True, spec.bias] * spec.n_layers
        self.grads = [np.zeros_like(p) for p in self.params]
        self._grads_t: list[np.ndarray] | None = None
        if self.recipe.batch_size == 0:
            # Full batch: weight gradients as (in, out) = A_prev @ dZᵀ, faster than dZ @ A_prevᵀ when the
            # reduction runs over 60000 samples (30 vs 35 ms for the tutorial's first layer); the optimiser
            # reads the (out, in) transposed view. (With minibatches the GEMMs are small and the optimiser's
            # passes over a transposed view cost more than they save, so they keep plain C arrays.)
            self._grads_t = [np.zeros(p.shape[::-1], np.float32) for p in self.params[0::2]]
            self.grads[0::2] = [g.T for g in self._grads_t]
        self._buffers: dict[tuple[int, bool], _Buffers] = {}

    def _buf(self, b: int, gather: bool) -> _Buffers:
        key = (b, gather)
        if key not in self._buffers:
            self._buffers[key] = _Buffers(self.sizes, b, gather)
        return self._buffers[key]

    def step(self, batch: np.ndarray | None) -> float:
        if batch is None:
            buf = self._buf(self._full.shape[1], False)
            X, Y = self._full, self._full_y
        elif self._rows is None:  # a minibatch in a full-batch recipe (only if called directly)
            self._rows, self._ys = np.ascontiguousarray(self._full.T), np.ascontiguousarray(self._full_y.T)
            return self.step(batch)
        elif len(batch) == 1:  # one sample: a view of its row, no copy
            i = int(batch[0])
            buf = self._buf(1, False)
            X, Y = self._rows[i : i + 1].T, self._ys[i : i + 1].T
        else:
            buf = self._buf(len(batch), True)
            X = np.take(self._rows, batch, axis=0, out=buf.x).T
            Y = np.take(self._ys, batch, axis=0, out=buf.y).T
        with np.errstate(over="ignore", invalid="ignore"):
            loss = self._forward_backward(buf, X, Y)
            self.optimizer.update(self.params, self.grads, self.trainable)
        return loss

    def _forward_backward(self, buf: _Buffers, X: np.ndarray, Y: np.ndarray) -> float:
        """:func:`loss_and_grads`, written into preallocated arrays; fills ``self.grads``."""
        spec, params, grads = self.spec, self.params, self.grads
        acts = [X]
        for layer, name in enumerate(spec.activations):
            Z = np.matmul(params[2 * layer], acts[-1], out=buf.z[layer])
            if spec.bias:
                Z += params[2 * layer + 1][:, None]
            if name == "relu":  # z * (z > 0): cheaper than np.maximum, and the mask is kept for backward
                np.multiply(Z, np.greater(Z, 0, out=buf.mask[layer]), out=Z)
            else:
                activate(name, Z)
            acts.append(Z)
        loss, dA = self._loss_and_output_grad(buf, acts[-1], Y)
        for layer in reversed(range(spec.n_layers)):
            dZ = self._activation_grad(buf, layer, acts[layer + 1], dA)
            if dZ.shape[1] == 1:  # one sample: an outer product; matmul would not call BLAS for k = 1
                np.multiply(dZ, acts[layer].T, out=grads[2 * layer])
            else:
                if self._grads_t is not None:
                    np.matmul(acts[layer], dZ.T, out=self._grads_t[layer])
                else:
                    np.matmul(dZ, acts[layer].T, out=grads[2 * layer])
            if spec.bias:
                np.sum(dZ, axis=1, out=grads[2 * layer + 1])
            if layer > 0:
                dA = np.matmul(params[2 * layer].T, dZ, out=buf.da[layer - 1])
        return loss

    def _activation_grad(self, buf: _Buffers, layer: int, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        """:func:`activation_grad` without temporaries (the same operations, so the same numbers)."""
        name = self.spec.activations[layer]
        if name == "relu":
            np.multiply(dA, buf.mask[layer], out=dA)  # the forward pass's A > 0
        elif name == "sigmoid":
            T = np.subtract(1, A, out=buf.tmp[layer])
            T *= A
            dA *= T
        elif name == "tanh":
            T = np.multiply(A, A, out=buf.tmp[layer])
            np.subtract(1, T, out=T)
            dA *= T
        return dA

    def _loss_and_output_grad(self, buf: _Buffers, AL: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        """:func:`loss_and_output_grad` without temporaries, for crossentropy and squared_error."""
        loss_name = self.spec.loss
        n = AL.shape[1]
        if loss_name == "crossentropy":
            P, G, col, T = buf.p, buf.g, buf.col, buf.tmp[-1]
            # softmax: exp(Z - max) / sum, column-wise
            np.subtract(AL, np.max(AL, axis=0, keepdims=True, out=col), out=P)
            np.exp(P, out=P)
            P /= np.sum(P, axis=0, keepdims=True, out=col)
            Pe = np.add(P, np.float32(CE_EPS), out=T)
            np.divide(Y, Pe, out=G)
            np.log(Pe, out=Pe)
            Pe *= Y
            loss = -float(np.sum(Pe, dtype=np.float64)) / n
            np.multiply(P, G, out=T)
            G -= np.sum(T, axis=0, keepdims=True, out=col)
            G *= P
            G *= np.float32(-1.0 / n)
            return loss, G
        if loss_name == "squared_error":
            D, T = buf.g, buf.tmp[-1]
            np.subtract(AL, Y, out=D)
            loss = 0.5 * float(np.sum(np.multiply(D, D, out=T), dtype=np.float64)) / n
            D *= np.float32(1.0 / n)
            return loss, D
        return loss_and_output_grad(self.spec, AL, Y)  # logitcrossentropy: allocates, rarely timed

    def parameters(self) -> list[np.ndarray]:
        params = [p.copy() for p in self.params]
        if self.active is not None:
            W1 = self._full_W1.copy()
            W1[:, self.active] = self.params[0]
            params[0] = W1
        return params

    def optimizer_state(self) -> dict[str, np.ndarray]:
        state = self.optimizer.state()
        if self.active is not None:
            for key in [k for k in state if k.endswith("/0")]:
                full = np.zeros_like(self._full_W1)
                full[:, self.active] = state[key]
                state[key] = full
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        if self.active is not None:
            unused = np.setdiff1d(np.arange(self._full_W1.shape[1]), self.active)
            if any(np.asarray(v)[:, unused].any() for k, v in state.items() if k.endswith("/0")):
                # State from other data moves weights our data gives no gradient: keep every column.
                self._setup(self.parameters(), None)
            else:
                used = self.active
                state = {k: np.asarray(v)[:, used] if k.endswith("/0") else v for k, v in state.items()}
        self.optimizer.load_state(state)


class NumpyBackend(Backend):
    name = "numpy"
    rules = ("backprop", "rashid")

    def version(self) -> str:
        return f"numpy {np.__version__}"

    def trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        self.check_recipe(recipe)
        if recipe.rule == "rashid":  # Rashid's hand-derived rule, not a gradient: see pyflux_mnist.rashid
            from ..rashid import RashidTrainer

            return RashidTrainer(recipe, params, X, Y)
        return NumpyTrainer(recipe, params, X, Y)

    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        return probabilities(spec, params, X)
