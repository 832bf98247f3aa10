"""Checkpoints: interrupt (a real SIGINT, in process) and resume reaches exactly the uninterrupted run;
bad checkpoints are refused; a diverging run never replaces a good checkpoint or model."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
from subset import Subset

from pyflux_mnist.checkpoint import StopFlag, load_checkpoint, save_checkpoint
from pyflux_mnist.errors import DivergedError, ModelFileError, PyfluxError, SpecError, TrainingInterrupted
from pyflux_mnist.run import Overrides, resolve_recipe
from pyflux_mnist.training import train


@pytest.fixture(scope="module")
def small(mnist):
    return Subset(mnist, 600, 200)


@pytest.fixture(scope="module")
def small_55k(mnist):
    return Subset(mnist, 5000 + 600, 200)  # train-55k drops the first 5000


def _interrupt_at(step: int):
    """A progress callback that presses Ctrl-C (a real SIGINT to this process) once ``step`` is done."""

    def on_progress(done: int, total: int, loss: float) -> None:
        if done == step:
            signal.raise_signal(signal.SIGINT)

    return on_progress


# Every optimiser (adam, descent, rmsprop) and every sampling (full batch, replacement, shuffled epochs with a
# partial last batch, a shuffled stream crossing epochs, sequential single samples).
CASES = {
    "flux-tutorial": ({"steps": 8, "hidden": 16}, 3),
    "numpy-twolayer": ({"steps": 40, "hidden": 16}, 17),
    "keras": ({"epochs": 2, "hidden": 16}, 7),  # 5 batches an epoch, the last one partial
    "tensorflow-tutorial": ({"steps": 20, "hidden": (16, 16, 16)}, 9),  # 4.7 batches an epoch
    # Rashid's trainer takes up to 2000 per-sample steps a call; a checkpoint interval ends a call too.
    "rashid": ({"epochs": 1, "hidden": 8}, 252),
}


@pytest.mark.parametrize("name", list(CASES))
def test_interrupt_then_resume_is_bit_identical(name: str, small, small_55k, tmp_path) -> None:
    data = small_55k if name == "tensorflow-tutorial" else small
    overrides, stop_at = CASES[name]
    r = resolve_recipe(name, Overrides(**overrides))
    reference = train(r, "numpy", data, 5)

    ck = tmp_path / "run.ckpt.npz"
    with pytest.raises(TrainingInterrupted, match=rf"after step {stop_at} of .*saved to .*--resume") as info:
        train(r, "numpy", data, 5, checkpoint=ck, checkpoint_every=4, on_progress=_interrupt_at(stop_at))
    assert info.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back
    assert load_checkpoint(ck).steps_done == stop_at

    resumed = train(data=data, resume=ck, checkpoint=ck, checkpoint_every=4)
    np.testing.assert_array_equal(resumed.losses, reference.losses)
    for a, b in zip(resumed.model.params, reference.model.params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.test_accuracy == reference.test_accuracy
    assert resumed.recipe == r


def test_periodic_checkpoints_and_the_last_one(small, tmp_path) -> None:
    ck = tmp_path / "c.npz"
    r = resolve_recipe("numpy-twolayer", Overrides(steps=10, hidden=8))
    seen = []

    def on_progress(done: int, total: int, loss: float) -> None:
        seen.append(load_checkpoint(ck).steps_done if ck.exists() else 0)

    result = train(r, "numpy", small, 1, checkpoint=ck, checkpoint_every=4, on_progress=on_progress)
    assert seen == [0, 0, 0, 0, 4, 4, 4, 4, 8, 8]  # progress is reported just before each checkpoint
    again = train(data=small, resume=ck)  # the last checkpoint is at step 8: two steps to go
    np.testing.assert_array_equal(again.losses, result.losses)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary files left behind


def test_interrupt_without_checkpoint_says_nothing_was_saved(small) -> None:
    r = resolve_recipe("numpy-twolayer", Overrides(steps=10, hidden=8))
    with pytest.raises(TrainingInterrupted, match="after step 3 of 10; nothing saved"):
        train(r, "numpy", small, 0, on_progress=_interrupt_at(3))


def test_second_ctrl_c_interrupts_at_once() -> None:
    flag = StopFlag()
    with flag.active():
        signal.raise_signal(signal.SIGINT)
        assert flag.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


@pytest.fixture(scope="module")
def checkpoint_file(small, tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "c.npz"
    r = resolve_recipe("flux-tutorial", Overrides(steps=4, hidden=8))
    train(r, "numpy", small, 0, checkpoint=path, checkpoint_every=2)
    return path


def test_resume_refuses_another_backend_schedule_or_data(checkpoint_file, small, mnist) -> None:
    pytest.importorskip("torch")
    with pytest.raises(PyfluxError, match="written by the numpy backend; resume it with --backend numpy"):
        train(data=small, resume=checkpoint_file, backend="torch")
    with pytest.raises(PyfluxError, match="trained on different data"):
        train(data=Subset(mnist, 601, 200), resume=checkpoint_file)
    with pytest.raises(SpecError, match="give no overrides"):
        train(data=small, resume=checkpoint_file, steps=10)


def _rewrite(src, dst, meta_changes=None, **entries) -> None:
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(meta_changes or {})
    arrays["meta"] = np.array(json.dumps(meta))
    arrays.update(entries)
    np.savez(dst, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    ("meta", "entries", "message"),
    [
        ({}, {"opt.m.0": None}, "expected entries"),
        ({}, {"opt.v.1": np.zeros(8, np.float64)}, "float32"),
        ({}, {"opt.t": np.array(3, np.int64)}, "optimiser step 3 does not match 4"),
        ({}, {"losses": np.full(4, np.nan)}, "NaN"),
        ({}, {"W1": np.full((8, 784), np.inf, np.float32)}, "NaN or Inf"),
        ({"steps_done": 9}, {}, "9 steps done of 4"),
        ({"steps_done": "4"}, {}, "must be an integer"),
        ({"seed": -1}, {}, "'seed' must be an integer"),
        ({"format": "pyflux-mnist-model"}, {}, "a model file: use it with evaluate"),
        ({"format_version": 99}, {}, "version 99 is not supported"),
        ({"backend": None}, {}, "lacks the backend"),
        ({"recipe": {"name": "x", "model": {"sizes": [784, 10**9, 10]}}}, {}, "layer sizes"),
    ],
)
def test_bad_checkpoints_are_refused_with_one_line(checkpoint_file, tmp_path, meta, entries, message) -> None:
    bad = tmp_path / "bad.npz"
    _rewrite(checkpoint_file, bad, meta, **entries)
    with pytest.raises(ModelFileError, match=message) as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)


def test_a_model_file_is_not_a_checkpoint_and_vice_versa(checkpoint_file, small, tmp_path) -> None:
    from pyflux_mnist.model import load_model

    model = train(resolve_recipe("flux-tutorial", Overrides(steps=1, hidden=8)), "numpy", small).model
    with pytest.raises(ModelFileError, match="a model file"):
        load_checkpoint(model.save(tmp_path / "m.npz"))
    with pytest.raises(ModelFileError):
        load_model(checkpoint_file)
    with pytest.raises(ModelFileError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.npz")


def test_divergence_never_overwrites_a_good_checkpoint(mnist, tmp_path) -> None:
    """SGD at lr 1 on the deep linear network overflows to NaN (the parameters go first)."""
    ck = tmp_path / "c.npz"
    r = resolve_recipe("tensorflow-tutorial", Overrides(steps=60)).replace(
        optimizer={"name": "descent", "lr": 1.0}
    )
    with pytest.raises(DivergedError, match=r"step \d+; try a lower learning rate") as info:
        train(r, "numpy", mnist, 0, checkpoint=ck, checkpoint_every=1)
    assert "\n" not in str(info.value)
    good = load_checkpoint(ck)  # still loads: only finite states were ever written
    assert 0 < good.steps_done < 60
    assert all(np.isfinite(p).all() for p in good.params)


def test_save_checkpoint_refuses_a_non_finite_state(checkpoint_file, tmp_path) -> None:
    ck = load_checkpoint(checkpoint_file)
    before = checkpoint_file.read_bytes()
    ck.optimizer_state["v/0"] = ck.optimizer_state["v/0"].copy()
    ck.optimizer_state["v/0"][0, 0] = np.inf
    with pytest.raises(DivergedError, match="was not overwritten"):
        save_checkpoint(checkpoint_file, ck)
    assert checkpoint_file.read_bytes() == before


@pytest.mark.torch
def test_torch_resume_matches_the_uninterrupted_run(small, tmp_path) -> None:
    pytest.importorskip("torch")
    r = resolve_recipe("numpy-twolayer", Overrides(steps=20, hidden=16)).replace(
        optimizer={"name": "adam", "lr": 1e-3}
    )
    reference = train(r, "torch", small, 2)
    ck = tmp_path / "t.npz"
    with pytest.raises(TrainingInterrupted):
        train(r, "torch", small, 2, checkpoint=ck, checkpoint_every=5, on_progress=_interrupt_at(11))
    resumed = train(data=small, backend="torch", resume=ck)
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-6)


@pytest.mark.julia
def test_flux_resume_matches_the_uninterrupted_run(small, tmp_path) -> None:
    from pyflux_mnist.backends import backend_status, julia_bridge

    reason = backend_status()["flux"]
    if reason and not julia_bridge.required():  # PYFLUX_MNIST_JULIA=1 (CI): unavailable is a failure
        pytest.skip(reason)
    r = resolve_recipe("numpy-twolayer", Overrides(steps=120, hidden=16))
    reference = train(r, "flux", small, 2)
    ck = tmp_path / "f.npz"
    with pytest.raises(TrainingInterrupted):  # Flux runs 50 steps a call, cut at checkpoint steps
        train(r, "flux", small, 2, checkpoint=ck, checkpoint_every=30, on_progress=_interrupt_at(30))
    resumed = train(data=small, backend="flux", resume=ck)
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-5)
    for a, b in zip(resumed.model.params, reference.model.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
