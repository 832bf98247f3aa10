"""Tariq Rashid's update rule ('Make Your Own Neural Network'), as his notebook's ``train()`` writes it.

The notebook does not run gradient descent on its squared error. Its output layer's update is the gradient,
but the error it passes back to the hidden layer is ``who.T @ (targets - outputs)``, *without* the output
sigmoid's derivative ``o (1 - o)``. Since that derivative is at most 0.25 (and about 0.01 once an output
sits near its 0.01/0.99 target), the hidden layer learns several times faster than true backprop would let
it. It matters: one epoch of the ``rashid`` recipe reaches 0.954 with this rule and about 0.93 with the
exact gradient from the same start.

For ``L`` sigmoid layers without biases, one step on a batch of ``B`` samples (columns of ``X``) is::

    e_L = T - A_L
    for l = L .. 1:   d_l = e_l * A_l * (1 - A_l)
                      e_{l-1} = W_lᵀ e_l          (with W_l before its update, as the notebook)
                      W_l += lr / B * d_l A_{l-1}ᵀ

which is Rashid's rule for ``B = 1`` (his only case) and its batch mean otherwise.

The rule is no loss's gradient, so only the NumPy backend runs it: this module is that backend's trainer for
recipes with ``rule="rashid"``. It is also the fast path for per-sample SGD: one sample per step is dominated
by call overhead, so the loop preallocates everything, does the big weight update in place with BLAS ``ger``
(when SciPy is installed) and pins BLAS to one thread (two threads on a 784×200 matrix-vector product are
several times slower than one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..blas import one_blas_thread
from ..spec import Recipe
from .base import Trainer
from .numpy_maths import sigmoid_

try:  # in-place rank-one update; the NumPy fallback needs a temporary matrix
    from scipy.linalg.blas import sger as _sger
except ImportError:  # pragma: no cover - SciPy is optional
    _sger = None


class RashidTrainer(Trainer):
    """Rashid's rule on float32 parameters ``[W1, b1, W2, b2, ...]`` (the biases stay zero)."""

    #: Steps per call from the training loop: per-sample steps are cheap, the loop's bookkeeping is not.
    chunk_size = 2000

    def __init__(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        self.spec = recipe.model
        self.lr = np.float32(recipe.optimizer.lr)
        self.params = [np.array(p, dtype=np.float32, order="C", copy=True) for p in params]
        self.X_rows = np.ascontiguousarray(X.T, dtype=np.float32)  # (N, 784): a sample is one row
        self.Y_rows = np.ascontiguousarray(Y.T, dtype=np.float32)
        self.t = 0
        self._tmp = [np.empty_like(p) for p in self.params[0::2]]  # for the NumPy fallback of ger

    @property
    def weights(self) -> list[np.ndarray]:
        return self.params[0::2]

    def _ger(self, alpha: np.float32, d: np.ndarray, a: np.ndarray, layer: int) -> None:
        """``W += alpha * outer(d, a)`` in place."""
        W = self.weights[layer]
        if _sger is not None:
            # W is C-ordered (out, in), so W.T is a Fortran-ordered (in, out) matrix BLAS updates in place.
            _sger(alpha, a, d, a=W.T, overwrite_a=1)
        else:  # pragma: no cover
            tmp = self._tmp[layer]
            np.multiply(d[:, None], a[None, :], out=tmp)
            tmp *= alpha
            W += tmp

    def _sample(self, i: int) -> float:
        Ws = self.weights
        acts = [self.X_rows[i]]
        for W in Ws:
            acts.append(sigmoid_(W @ acts[-1]))
        e = self.Y_rows[i] - acts[-1]
        loss = 0.5 * float(np.dot(e, e))
        for layer in reversed(range(len(Ws))):
            A = acts[layer + 1]
            d = e * A * (1 - A)
            if layer:
                e = Ws[layer].T @ e  # the error itself, not d: Rashid's rule
            self._ger(self.lr, d, acts[layer], layer)
        return loss

    def _batch(self, idx: np.ndarray) -> float:
        Ws = self.weights
        acts = [self.X_rows[idx].T]
        for W in Ws:
            acts.append(sigmoid_(W @ acts[-1]))
        E = self.Y_rows[idx].T - acts[-1]
        n = len(idx)
        loss = 0.5 * float(np.sum(E * E, dtype=np.float64)) / n
        for layer in reversed(range(len(Ws))):
            A = acts[layer + 1]
            D = E * A * (1 - A)
            if layer:
                E = Ws[layer].T @ E
            Ws[layer] += (self.lr / np.float32(n)) * (D @ acts[layer].T)
        return loss

    def step(self, batch: np.ndarray | None) -> float:
        return float(self.run([batch])[0])

    def run(self, batches: Sequence[np.ndarray | None]) -> np.ndarray:
        losses = np.empty(len(batches), dtype=np.float64)
        full = np.arange(len(self.X_rows))
        with one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            for k, batch in enumerate(batches):
                idx = full if batch is None else batch
                losses[k] = self._sample(int(idx[0])) if len(idx) == 1 else self._batch(idx)
        self.t += len(batches)
        return losses

    def parameters(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, dtype=np.int64)}  # plain descent keeps no state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
