"""Checkpoints: everything needed to continue a training run exactly where it stopped.

A checkpoint is the model file's ``.npz`` format (no pickles, every entry's header checked before it is
read) with more in it:

* ``W1, b1, ...``: the parameters after ``steps_done`` steps (float32, as in a model file);
* ``opt.t`` and ``opt.<slot>.<i>``: the optimiser state (Adam's ``m``/``v``, RMSprop's ``acc``);
* ``losses``: the loss of every step so far (float64), so a resumed run reports the whole curve;
* ``meta``: JSON with the recipe, seed, backend, steps done and total, and a fingerprint of the training
  labels (resuming on other data is refused).

The batch order is not stored: a :class:`~pyflux_mnist.prepare.Schedule` is deterministic from the seed, so
a resumed run regenerates it and skips the batches already done (drawing them, so the random stream
advances exactly as it did). Saves are atomic; a state holding NaN or Inf is never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import SLOTS, slot_key
from .errors import STOP_SIGNALS, DivergedError, ModelFileError, PyfluxError
from .model import FORMAT as MODEL_FORMAT
from .model import entry_name, recipe_from_meta
from .safe_npz import open_npz, read_array, read_meta, write_npz
from .spec import Recipe
from .userpaths import escape

FORMAT = "pyflux-mnist-checkpoint"
FORMAT_VERSION = 1
#: Steps between checkpoints when ``--checkpoint`` is given without ``--checkpoint-every``.
DEFAULT_EVERY = 100


@dataclass
class Checkpoint:
    """A training run stopped after ``steps_done`` of ``total_steps`` steps."""

    recipe: Recipe
    params: list[np.ndarray]
    optimizer_state: dict[str, np.ndarray]  # the Trainer's format: "t", "m/0", "v/0", "acc/0", ...
    losses: np.ndarray  # (steps_done,) float64
    seed: int
    backend: str
    total_steps: int
    data_fingerprint: str
    every: int = 0  # the checkpoint interval the run used
    path: str | None = None  # where it was read from (not stored): named in every error about it

    @property
    def steps_done(self) -> int:
        return len(self.losses)


#: The image part of the fingerprint hashes every IMAGE_STRIDE-th value of the prepared training inputs
#: (a prime, so the sample walks across pixels and images alike: ~11,500 of 47 million values for MNIST).
IMAGE_STRIDE = 4099


def data_fingerprint(labels: np.ndarray, images: np.ndarray | None = None) -> str:
    """A short hash of the training labels in training order, and of a strided sample of the prepared
    training images (``(784, N)``): changes if the data or its preparation does (inverted images too).

    ``N:<labels>`` without images (checkpoints written before images were fingerprinted look like that).
    """
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    out = f"{len(labels)}:{hashlib.sha256(labels.tobytes()).hexdigest()[:16]}"
    if images is not None:
        sample = np.ascontiguousarray(np.asarray(images).reshape(-1)[::IMAGE_STRIDE], dtype=np.float32)
        out += f":img{hashlib.sha256(sample.tobytes()).hexdigest()[:16]}"
    return out


def _slot_key(key: str) -> str:
    """Trainer key ``m/0`` ↔ file entry ``opt.m.0`` (entry names stay plain identifiers)."""
    return "opt." + key.replace("/", ".")


def save_checkpoint(path: str | os.PathLike[str], ck: Checkpoint) -> Path:
    """Write ``ck`` atomically; the previous checkpoint stays intact if anything fails.

    A state with NaN or Inf anywhere is refused with :class:`DivergedError` and nothing is written, so a
    diverging run never replaces a good checkpoint with a broken one.
    """
    path = Path(path)
    arrays = {entry_name(i): np.asarray(p, np.float32) for i, p in enumerate(ck.params)}
    for key, value in ck.optimizer_state.items():
        arrays[_slot_key(key)] = np.asarray(value, np.int64 if key == "t" else np.float32)
    arrays["losses"] = np.asarray(ck.losses, np.float64)
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise DivergedError(
                f"training diverged: {name} holds NaN or Inf after step {ck.steps_done}; try a lower "
                f"learning rate (--lr); the checkpoint {path} was not overwritten"
            )
    meta = {
        "recipe": ck.recipe.to_dict(),
        "seed": ck.seed,
        "backend": ck.backend,
        "steps_done": ck.steps_done,
        "total_steps": ck.total_steps,
        "data": ck.data_fingerprint,
        "every": ck.every,
    }
    return write_npz(path, FORMAT, FORMAT_VERSION, "checkpoint", meta, arrays)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint; any problem is one :class:`ModelFileError` line."""
    path = Path(path)
    with open_npz(path, "checkpoint") as npz:
        meta = read_meta(
            npz, path, FORMAT, FORMAT_VERSION, "checkpoint",
            hints={MODEL_FORMAT: " (a model file: use it with evaluate, not --resume)"},
        )  # fmt: skip
        recipe = recipe_from_meta(meta, path)
        steps_done, total = _count(meta, "steps_done", path), _count(meta, "total_steps", path)
        if not 0 < steps_done <= total:
            raise ModelFileError(f"{path}: {steps_done} steps done of {total} is not a training position")
        shapes = recipe.model.param_shapes
        slots = [slot_key(s, i) for s in SLOTS[recipe.optimizer.name] for i in range(len(shapes))]
        wanted = (
            {entry_name(i) for i in range(len(shapes))}
            | {_slot_key(k) for k in ["t", *slots]}
            | {"losses", "meta"}
        )
        if set(npz.files) != wanted:
            raise ModelFileError(f"{path}: expected entries {sorted(wanted)}, found {sorted(npz.files)}")
        params = [read_array(npz, entry_name(i), np.float32, s, path) for i, s in enumerate(shapes)]
        state = {
            key: read_array(npz, _slot_key(key), np.float32, shapes[int(key.split("/")[1])], path)
            for key in slots
        }
        state["t"] = read_array(npz, "opt.t", np.int64, (), path)
        losses = read_array(npz, "losses", np.float64, (steps_done,), path)
    if int(state["t"]) != steps_done:
        raise ModelFileError(
            f"{path}: optimiser step {int(state['t'])} does not match {steps_done} steps done"
        )
    backend, fingerprint = meta.get("backend"), meta.get("data")
    if not isinstance(backend, str) or not isinstance(fingerprint, str):
        raise ModelFileError(f"{path}: checkpoint metadata lacks the backend or the data fingerprint")
    return Checkpoint(
        recipe=recipe,
        params=params,
        optimizer_state=state,
        losses=losses,
        seed=_count(meta, "seed", path, minimum=0),
        backend=backend,
        total_steps=total,
        data_fingerprint=fingerprint,
        every=_count(meta, "every", path, minimum=0),
        path=str(path),
    )


def _count(meta: dict[str, Any], key: str, path: Path, minimum: int = 1) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise ModelFileError(
            f"{path}: checkpoint metadata {key!r} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def check_resumable(ck: Checkpoint, backend: str) -> None:
    """Refuse to continue a checkpoint on another backend: the result would be neither the interrupted
    run nor a new one (the schedule and the data are checked by :func:`check_same_data` once loaded)."""
    if ck.backend != backend:
        raise PyfluxError(
            f"checkpoint {_where(ck)} was written by the {ck.backend} backend; "
            f"resume it with --backend {ck.backend}"
        )


def check_same_data(ck: Checkpoint, total_steps: int, fingerprint: str) -> None:
    """Refuse to continue a checkpoint on another schedule or data set.

    A checkpoint from before the images were fingerprinted (``N:<labels>``) is compared on its labels.
    """
    path = _where(ck)
    if ck.data_fingerprint.count(":") == 1:
        fingerprint = fingerprint.rsplit(":img", 1)[0]
    if ck.total_steps != total_steps:
        raise PyfluxError(
            f"checkpoint {path} is for a {ck.total_steps}-step run; this one would have {total_steps} steps"
        )
    if ck.data_fingerprint != fingerprint:
        same_labels = ck.data_fingerprint.split(":")[:2] == fingerprint.split(":")[:2]
        what = "other images (same labels)" if same_labels else "different data"
        raise PyfluxError(
            f"checkpoint {path} was trained on {what} ({escape(ck.data_fingerprint)}, here {fingerprint})"
        )


def _where(ck: Checkpoint) -> str:
    return escape(ck.path or "(in memory)")


# --- Ctrl-C -------------------------------------------------------------------------------------------


class StopFlag:
    """While active, the first SIGINT (Ctrl-C) only sets :attr:`requested`; training stops at the next step
    boundary, so the saved state is never half an update. A second Ctrl-C interrupts at once."""

    #: SIGTERM (``kill``, a job scheduler's time limit, ``docker stop``) and SIGHUP (the terminal closed)
    #: are handled like Ctrl-C.
    SIGNALS = tuple(STOP_SIGNALS)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the signal that asked to stop
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal, as shells report it: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
        return 128 + int(self.signum or signal.SIGINT)

    @property
    def what(self) -> str:
        return STOP_SIGNALS[self.signum or signal.SIGINT]

    @contextlib.contextmanager
    def active(self) -> Iterator[StopFlag]:
        # Signal handlers can only be installed from the main thread; elsewhere Ctrl-C never arrives anyway.
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in self._previous.items():
                signal.signal(s, handler)
