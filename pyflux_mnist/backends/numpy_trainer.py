"""The NumPy backend's fast trainer: :class:`~.numpy_backend.ReferenceTrainer`'s arithmetic, in float32,
arranged for speed. docs/benchmarks.md has the measurements behind every choice here.

* **Pixels that are zero in every training sample** (67 of 784 in MNIST with ``unit`` or ``raw`` scaling)
  contribute exactly zero to ``W1 @ X`` and get exactly zero gradient, hence exactly zero update from Adam,
  RMSprop and Descent (their state starts at zero and stays there). We leave them out of the arithmetic:
  ``W1``'s used columns and the used rows of ``X`` are kept as compact copies, and :meth:`parameters` puts
  the untouched columns back. Sums then run over fewer (only zero) terms, so results agree with the
  reference to float32 rounding, not bit for bit.
* **No allocation per step**: batches are gathered with ``np.take(..., out=)``, products written with
  ``np.matmul(..., out=)``, and a batch of one sample is a view, not a copy.
* **A full batch is a sum over blocks** of at most 8192 samples, each stored ``(features, block)``
  C-ordered, whose activations fit in one core's L2 cache. The blocks are shared out to as many Python
  threads as NumPy's BLAS has (NumPy releases the GIL in products and element-wise loops), each running
  BLAS single-threaded: this network's thin products (32 outputs) run ~15 % faster that way than on
  BLAS's own threads, and the element-wise passes run in parallel too. Each block's gradient has its own
  buffer and the blocks are added in a fixed order, so the numbers do not depend on the thread count.
* **Weights are stored ``(in, out)``** (the trainer holds ``(out, in)`` views of them) and weight gradients
  are computed as ``A_prev @ dZᵀ`` straight into that layout: faster for full batches (the sum runs over
  thousands of samples) and for keras's batch of 128 on two BLAS threads (0.53 against 0.74 ms for the
  784→512 gradient). The optimiser's state takes the same layout, so its element-wise passes stay
  contiguous; the numbers are bit-identical to the ``(out, in)`` arrangement.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..blas import blas_controller, blas_threads
from ..errors import PyfluxError
from ..spec import Recipe
from .base import CE_EPS, Trainer
from .numpy_maths import Optimizer, activate, loss_and_output_grad

#: Most samples in one block of a full batch. Measured on 60000 samples, 2 threads: blocks of 7500 ran
#: 5 % faster than 3750 or 15000 (a 32 × 7500 float32 activation is 0.9 MiB: one core's L2).
BLOCK = 8192


def block_bounds(n: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each block of ``n`` samples: at most :data:`BLOCK`, equal to within one, and a
    multiple of 4 of them so that 1, 2 or 4 threads get equal shares (60000 samples: 8 blocks of 7500)."""
    count = 4 * max(1, -(-n // (4 * BLOCK)))
    edges = [i * n // count for i in range(count + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]


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
    """The NumPy backend's trainer (see the module docstring for what makes it fast).

    ``threads``: Python threads for full batches; default NumPy's BLAS thread count, read once here.
    """

    def __init__(
        self,
        recipe: Recipe,
        params: list[np.ndarray],
        X: np.ndarray,
        Y: np.ndarray,
        threads: int | None = None,
    ) -> None:
        self.recipe = recipe
        self.spec = recipe.model
        # PyFluxMNIST.Trainer refuses this too
        if X.ndim != 2 or Y.shape != (recipe.model.sizes[-1], X.shape[1]):
            raise PyfluxError(
                f"expected Y of shape ({recipe.model.sizes[-1]}, {X.shape[1]}) (targets × samples) for X of "
                f"shape {X.shape}, got {Y.shape}"
            )
        self._X_rows, self._Y_rows = X.T, Y.T  # (N, 784) and (N, 10) C-contiguous for prepared data
        self._blas = blas_controller()  # kept: pinning BLAS at every step must not search for it again
        self.threads = max(1, threads if threads is not None else blas_threads(self._blas))
        used = self._X_rows.any(axis=0)
        self._setup(params, None if used.all() else np.flatnonzero(used))

    def _setup(self, params: list[np.ndarray], active: np.ndarray | None) -> None:
        spec, full_batch = self.spec, self.recipe.batch_size == 0
        self.active = active
        self._full_W1 = np.array(params[0], dtype=np.float32, copy=True)  # holds the columns we never touch
        self.params = [np.array(p, dtype=np.float32, copy=True) for p in params]
        if active is not None:
            self.params[0] = self.params[0][:, active]
        # Weights live as (in, out) C-ordered arrays seen through (out, in) views: the weight-gradient
        # product writes that layout fastest, and the optimiser's slots (``zeros_like``) take the same one,
        # so its element-wise passes run over matching, contiguous memory.
        self.params[0::2] = [np.ascontiguousarray(W.T).T for W in self.params[0::2]]
        used = slice(None) if active is None else active
        self.n_samples, n_pixels = self._X_rows.shape
        self.sizes = (n_pixels if active is None else len(active), *spec.sizes[1:])
        self.optimizer = Optimizer(self.recipe.optimizer, self.params)
        self.trainable = [True, spec.bias] * spec.n_layers
        self.grads = self._new_grads()
        if full_batch:  # blocks of (features, block) C-ordered copies; rows only if a minibatch ever comes
            # (Picking columns of contiguous rows, then transposing, is 4 x faster than rows of X's view.)
            X, Y = self._X_rows, self._Y_rows
            self._blocks = [
                (np.ascontiguousarray(X[lo:hi, used].T), np.ascontiguousarray(Y[lo:hi].T))
                for lo, hi in block_bounds(self.n_samples)
            ]
            self._rows = self._ys = None
        else:  # minibatches gather whole rows; a full batch (if ever asked) is one block of their views
            self._rows = np.ascontiguousarray(self._X_rows if active is None else self._X_rows[:, active])
            self._ys = np.ascontiguousarray(self._Y_rows)
            self._blocks = [(self._rows.T, self._ys.T)]
        # Block 0 writes into self.grads; every other block into its own arrays, added in block order.
        self._block_grads = [self.grads] + [self._new_grads() for _ in self._blocks[1:]]
        self._block_loss = [0.0] * len(self._blocks)
        # Worker w runs blocks [w * count // workers, (w + 1) * count // workers); the caller is worker 0.
        count = len(self._blocks)
        workers = min(self.threads, count)
        self._shares = [range(w * count // workers, (w + 1) * count // workers) for w in range(workers)]
        self._pool = ThreadPoolExecutor(max(workers - 1, 1), "pyflux-numpy")  # starts threads when used
        self._buffers: dict[tuple[int, bool, int], _Buffers] = {}

    def _new_grads(self) -> list[np.ndarray]:
        return [np.zeros_like(p) for p in self.params]  # weights: (in, out) arrays, like the parameters

    def _buf(self, b: int, gather: bool = False, worker: int = 0) -> _Buffers:
        key = (b, gather, worker)
        if key not in self._buffers:
            self._buffers[key] = _Buffers(self.sizes, b, gather)
        return self._buffers[key]

    def step(self, batch: np.ndarray | None) -> float:
        # Overflow shows up as a NaN/Inf loss, which the training loop reports as divergence.
        with np.errstate(over="ignore", invalid="ignore"):
            loss = self._full_batch() if batch is None else self._minibatch(batch)
            self.optimizer.update(self.params, self.grads, self.trainable)
        return loss

    def _minibatch(self, batch: np.ndarray) -> float:
        """Loss and ``self.grads`` on the samples ``batch``, gathered into preallocated rows."""
        if self._rows is None or self._ys is None:  # a minibatch in a full-batch recipe (called directly)
            X = np.concatenate([x for x, _ in self._blocks], axis=1)
            Y = np.concatenate([y for _, y in self._blocks], axis=1)
            self._rows, self._ys = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
        if len(batch) == 1:  # one sample: a view of its row, no copy
            i = int(batch[0])
            buf = self._buf(1)
            X, Y = self._rows[i : i + 1].T, self._ys[i : i + 1].T
        else:
            buf = self._buf(len(batch), gather=True)
            assert buf.x is not None and buf.y is not None  # gather=True allocates them
            X = np.take(self._rows, batch, axis=0, out=buf.x).T  # (features, B)
            Y = np.take(self._ys, batch, axis=0, out=buf.y).T
        return self._forward_backward(buf, X, Y, self.grads, X.shape[1])

    def _full_batch(self) -> float:
        """Loss and ``self.grads`` over every sample: the blocks' sums, computed by ``len(self._shares)``
        threads with one BLAS thread each, then added in block order."""
        with self._blas.limit(limits=1):
            others = [self._pool.submit(self._run_share, w) for w in range(1, len(self._shares))]
            self._run_share(0)
            for future in others:
                future.result()
        for c in range(1, len(self._blocks)):
            for total, part in zip(self.grads, self._block_grads[c], strict=True):
                total += part
        return sum(self._block_loss)

    def _run_share(self, worker: int) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # np.errstate is per thread: set it in each
            for c in self._shares[worker]:
                X, Y = self._blocks[c]
                buf = self._buf(X.shape[1], worker=worker)
                self._block_loss[c] = self._forward_backward(buf, X, Y, self._block_grads[c], self.n_samples)

    def _forward_backward(
        self, buf: _Buffers, X: np.ndarray, Y: np.ndarray, grads: list[np.ndarray], n: int
    ) -> float:
        """:func:`~.numpy_maths.loss_and_grads` for the samples ``X`` of a batch of ``n``, written into
        ``buf`` and ``grads``: the batch's loss and gradients are the sums of these over its blocks."""
        spec, params = self.spec, self.params
        acts = [X]
        for layer, name in enumerate(spec.activations):
            Z = np.matmul(params[2 * layer], acts[-1], out=buf.z[layer])  # (out, b)
            if spec.bias:
                Z += params[2 * layer + 1][:, None]
            if name == "relu":  # z * (z > 0): cheaper than np.maximum, and the mask is kept for backward
                np.multiply(Z, np.greater(Z, 0, out=buf.mask[layer]), out=Z)
            else:
                activate(name, Z)
            acts.append(Z)
        loss, dA = self._loss_and_output_grad(buf, acts[-1], Y, n)
        for layer in reversed(range(spec.n_layers)):
            dZ = self._activation_grad(buf, layer, acts[layer + 1], dA)  # (out, b)
            if dZ.shape[1] == 1:  # one sample: an outer product; matmul would not call BLAS for k = 1
                np.multiply(dZ, acts[layer].T, out=grads[2 * layer])
            else:
                np.matmul(acts[layer], dZ.T, out=grads[2 * layer].T)  # (in, out)
            if spec.bias:
                np.sum(dZ, axis=1, out=grads[2 * layer + 1])
            if layer > 0:
                dA = np.matmul(params[2 * layer].T, dZ, out=buf.da[layer - 1])  # (in, b)
        return loss

    def _activation_grad(self, buf: _Buffers, layer: int, A: np.ndarray, dA: np.ndarray) -> np.ndarray:
        """:func:`~.numpy_maths.activation_grad` without temporaries (the same operations, so the same
        numbers)."""
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

    def _loss_and_output_grad(
        self, buf: _Buffers, AL: np.ndarray, Y: np.ndarray, n: int
    ) -> tuple[float, np.ndarray]:
        """:func:`~.numpy_maths.loss_and_output_grad` without temporaries, for crossentropy and
        squared_error."""
        loss_name = self.spec.loss
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
        return loss_and_output_grad(self.spec, AL, Y, n)  # logitcrossentropy: allocates, rarely timed

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
