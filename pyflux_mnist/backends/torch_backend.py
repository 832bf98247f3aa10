"""PyTorch, written the way a PyTorch user would: ``nn.Linear`` layers on ``(N, 784)`` rows, autograd and
``torch.optim``. It is the independent reference the NumPy backend is checked against, and the baseline the
benchmark compares with.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np

from ..spec import ModelSpec, Recipe
from .base import CE_EPS, SLOTS, Backend, Trainer, slot_key


def _torch():
    import torch  # here, not at the top: importing torch takes seconds, and only this backend needs it

    return torch


def build(spec: ModelSpec, params: list[np.ndarray], dtype=None):
    """An ``nn.Sequential`` holding copies of ``params`` (the output softmax is applied in the loss)."""
    torch = _torch()
    nn = torch.nn
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}
    layers: list = []
    for i, name in enumerate(spec.activations):
        (out_features, in_features), _ = spec.shapes[i]
        lin = nn.Linear(in_features, out_features, bias=True, dtype=dtype or torch.float32)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(params[2 * i])))
            lin.bias.copy_(torch.from_numpy(np.asarray(params[2 * i + 1])))
        lin.bias.requires_grad_(spec.bias)
        layers += [lin, acts[name]()]
    return nn.Sequential(*layers)


def loss_fn(spec: ModelSpec, out, Y):
    """The loss as Flux defines it, on ``out`` (N, 10) and targets ``Y`` (N, 10)."""
    torch = _torch()
    if spec.loss == "crossentropy":
        return -(Y * torch.log(torch.softmax(out, dim=1) + CE_EPS)).sum(dim=1).mean()
    if spec.loss == "logitcrossentropy":
        return -(Y * torch.log_softmax(out, dim=1)).sum(dim=1).mean()
    return 0.5 * ((out - Y) ** 2).sum(dim=1).mean()


def make_optimizer(recipe: Recipe, parameters):
    torch = _torch()
    o = recipe.optimizer
    if o.name == "adam":
        return torch.optim.Adam(parameters, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=o.lr, alpha=o.rho, eps=o.eps)
    return torch.optim.SGD(parameters, lr=o.lr)


class TorchTrainer(Trainer):
    def __init__(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        torch = _torch()
        self.torch = torch
        self.spec = recipe.model
        self.net = build(self.spec, params)
        self.trainable = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = make_optimizer(recipe, self.trainable)
        self.optimizer_name = recipe.optimizer.name
        # X.T is the C-contiguous (N, 784) buffer: torch shares it, no copy.
        self.X = torch.from_numpy(np.ascontiguousarray(X.T))
        self.Y = torch.from_numpy(np.ascontiguousarray(Y.T))

    def step(self, batch: np.ndarray | None) -> float:
        torch = self.torch
        if batch is None:
            X, Y = self.X, self.Y
        else:
            idx = torch.from_numpy(batch)
            X, Y = self.X.index_select(0, idx), self.Y.index_select(0, idx)
        self.opt.zero_grad(set_to_none=True)
        loss = loss_fn(self.spec, self.net(X), Y)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def parameters(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.net.parameters()]

    def optimizer_state(self) -> dict[str, np.ndarray]:
        params = list(self.net.parameters())
        state: dict[str, np.ndarray] = {"t": np.array(0, dtype=np.int64)}
        names = {"exp_avg": "m", "exp_avg_sq": "v", "square_avg": "acc"}
        for i, p in enumerate(params):
            for key, value in self.opt.state.get(p, {}).items():
                if key == "step":
                    state["t"] = np.array(int(value), dtype=np.int64)
                elif key in names:
                    state[slot_key(names[key], i)] = value.detach().numpy().copy()
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        torch = self.torch
        names = {"m": "exp_avg", "v": "exp_avg_sq", "acc": "square_avg"}
        for i, p in enumerate(self.net.parameters()):
            if not p.requires_grad:
                continue
            slots = {
                names[s]: torch.from_numpy(np.array(state[slot_key(s, i)]))
                for s in SLOTS[self.optimizer_name]
                if slot_key(s, i) in state
            }
            if slots:
                slots["step"] = torch.tensor(float(state["t"]))
                self.opt.state[p] = slots


class TorchBackend(Backend):
    name = "torch"
    library = "torch"
    distribution = "torch"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed: pip install 'pyflux-mnist[torch]'"
        return None

    def version(self) -> str:
        torch = _torch()
        return f"torch {torch.__version__} ({_torch_blas(torch)} BLAS)"

    def pin_threads(self, threads: int) -> None:
        _torch().set_num_threads(threads)

    def threads(self) -> dict[str, int | str]:
        torch = _torch()
        return {"intra-op": torch.get_num_threads(), "inter-op": torch.get_num_interop_threads()}

    def _trainer(self, recipe: Recipe, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> Trainer:
        return TorchTrainer(recipe, params, X, Y)

    def probabilities(self, spec: ModelSpec, params: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.no_grad():
            out = build(spec, params)(torch.from_numpy(np.ascontiguousarray(X.T)))
            if spec.loss != "squared_error":
                out = torch.softmax(out, dim=1)
        return out.numpy().T


def _torch_blas(torch: ModuleType) -> str:
    """The BLAS torch was built with, from ``torch.__config__.show()`` (e.g. ``mkl`` or ``open``)."""
    try:
        for line in torch.__config__.show().splitlines():
            if "BLAS_INFO=" in line:
                return line.split("BLAS_INFO=", 1)[1].split(",")[0].strip()
    except Exception:  # a report detail must never fail the benchmark
        pass
    return "unknown"
