"""The Flux.jl backend: the arithmetic runs in Julia (``julia/PyFluxMNIST.jl``), everything else stays here.

Python still owns the data, the initial weights and the batch order, so a Flux run is comparable step for
step with the NumPy backend, and the trained weights come back as NumPy arrays that the generic code saves
and evaluates without Julia. Julia is started on first use, through
:mod:`pyflux_mnist.backends.julia_bridge`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import BackendUnavailable, PyfluxError
from ..spec import ModelSpec, Recipe
from . import julia_bridge as jb
from .base import SLOTS, Backend, Trainer, slot_key


class FluxTrainer(Trainer):
    """A ``PyFluxMNIST.Trainer`` held in Julia: model, ``Flux.setup`` state and a Julia copy of the data."""

    chunk_size = 50  # steps per Julia call: one crossing of the bridge per 50 steps

    def __init__(self, julia, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        spec, opt = recipe.model, recipe.optimizer
        self._jl = julia
        self._n_params = len(params)
        self._n_samples = X.shape[1]
        self._slots = SLOTS[opt.name]
        # X and Y go over as zero-copy PyArrays; the Julia constructor copies them once into Matrix{Float32}.
        self._trainer = julia.call(
            "Trainer",
            jb.julia_params(params),
            tuple(spec.activations),
            spec.loss,
            bool(spec.bias),
            jb.julia_matrix(X, what="X"),
            jb.julia_matrix(Y, rows=10, what="Y"),
            optimiser=opt.name,
            lr=float(opt.lr),
            beta1=float(opt.beta1),
            beta2=float(opt.beta2),
            rho=float(opt.rho),
            eps=float(opt.eps),
        )

    def run(self, batches: Sequence[np.ndarray | None]) -> np.ndarray:
        """All of ``batches`` in one Julia call (``train_steps!``); the losses before each update."""

        if len(batches) == 0:
            return np.empty(0, dtype=np.float64)
        indices, sizes = jb.encode_batches(batches, self._n_samples)
        losses = self._jl.call("train_steps_b", self._trainer, indices, sizes)
        return jb.to_numpy(losses, np.float64)

    def step(self, batch: np.ndarray | None) -> float:
        return float(self.run([batch])[0])

    def parameters(self) -> list[np.ndarray]:
        return [jb.to_numpy(a) for a in self._jl.call("parameters", self._trainer)]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        t, *slots = self._jl.call("optimiser_state", self._trainer)
        state = {"t": np.array(int(t), dtype=np.int64)}
        for name, arrays in zip(self._slots, slots, strict=True):
            for i, a in enumerate(arrays):
                state[slot_key(name, i)] = jb.to_numpy(a)
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        missing = [
            key
            for key in ["t"] + [slot_key(s, i) for s in self._slots for i in range(self._n_params)]
            if key not in state
        ]
        if missing:
            raise PyfluxError(f"optimiser state is missing {', '.join(missing)}")
        slots = tuple(
            tuple(
                np.ascontiguousarray(state[slot_key(s, i)], dtype=np.float32) for i in range(self._n_params)
            )
            for s in self._slots
        )
        self._jl.call("load_optimiser_state_b", self._trainer, int(state["t"]), *slots)


class FluxBackend(Backend):
    name = "flux"
    distribution = "juliacall"

    def unavailable_reason(self) -> str | None:
        return jb.unavailable_reason()

    def _julia(self):
        return jb.load()

    def unconfirmed(self) -> str | None:
        return jb.unconfirmed()

    def version(self) -> str:
        """What really runs (starts Julia); :class:`BackendUnavailable` when Julia or Flux cannot be had."""
        st = jb.julia_status(start=True)
        if not st["available"]:
            raise BackendUnavailable(st["reason"])
        return (
            f"Flux {st['flux']}, Optimisers {st['optimisers']}, Julia {st['julia']}, "
            f"PythonCall {st['pythoncall']}, juliacall {st['juliacall']}"
        )

    def load_library(self) -> dict[str, float]:
        """Start Julia (``import juliacall``), then load our module (``using Flux``), each timed, through the
        bridge's :func:`~.julia_bridge.load`, so a failure gets its one-line hint and is remembered."""
        timings = jb.load().timings  # the first load in this process: bench's workers are fresh ones
        return {**timings, "import": sum(timings.values())}

    def details(self) -> dict[str, object]:
        return dict(jb.julia_status())

    def details_line(self) -> str | None:
        """Julia's versions and threads when they are known, else why it is unavailable."""
        julia = self.details()
        if not julia.get("juliacall") and not julia.get("started"):
            return "juliacall is not installed (see the backend lines above)"
        if julia.get("reason"):
            return f"unavailable: {julia['reason']}"
        keys = ("juliacall", "julia", "flux", "optimisers", "pythoncall")
        parts = [f"{k} {julia[k]}" for k in keys if julia.get(k)]
        parts.append("started" if julia.get("started") else "not started yet (starts on first use)")
        if julia.get("julia_threads"):
            parts.append(f"{julia['julia_threads']} thread(s)")
        return ", ".join(parts)

    def threads(self) -> dict[str, int | str]:
        """Julia's threads (as juliacall started it) and Julia's BLAS threads. Starts Julia."""

        st = jb.julia_status(start=True)
        return {"Julia": st.get("julia_threads") or "?", "Julia BLAS": st.get("blas_threads", "?")}

    def _trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        return FluxTrainer(self._julia(), recipe, params, X, Y)

    def _model_args(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> tuple:
        return (
            jb.julia_params(params),
            tuple(spec.activations),
            spec.loss,
            bool(spec.bias),
            jb.julia_matrix(X, what="X"),
        )

    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        return jb.to_numpy(self._julia().call("probabilities", *self._model_args(spec, params, X)))

    def predict(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """``Flux.onecold(ŷ, 0:9)``, computed in Julia."""

        return jb.to_numpy(self._julia().call("predict", *self._model_args(spec, params, X)), np.int64)
