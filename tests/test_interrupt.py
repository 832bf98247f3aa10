"""Ctrl-C on the real command, and the CLI's fail-fast checks of options and paths."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from cli_runs import invoker, start_cli

from pyflux_mnist.checkpoint import load_checkpoint
from pyflux_mnist.model import load_model


def test_sigint_stops_cleanly_and_resume_reaches_the_same_model(mnist_dir, tmp_path) -> None:
    ck, saved, ref = tmp_path / "run.ckpt.npz", tmp_path / "model.npz", tmp_path / "ref.npz"
    common = ["--data-dir", str(mnist_dir), "--offline", "--json"]
    run = ["train", "--recipe", "numpy-twolayer", "--hidden", "16", "--steps", "2000", "--seed", "4"]
    reference = start_cli(*run, "--save", str(ref), *common)  # the uninterrupted run, alongside
    proc = start_cli(*run, "--checkpoint", str(ck), "--checkpoint-every", "50", *common)
    deadline = time.monotonic() + 120
    while not ck.exists():  # the first checkpoint: training is under way
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: interrupted after step ") and f"checkpoint saved to {ck}" in last, err
    assert "Traceback" not in err and out == ""
    stopped_at = load_checkpoint(ck).steps_done
    assert 0 < stopped_at < 2000 and f"after step {stopped_at} of 2000" in last

    resumed = start_cli("train", "--resume", str(ck), "--save", str(saved), *common)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    summary, expected = json.loads(out), json.loads(ref_out)
    for key in ("final_loss", "steps", "train_accuracy", "test_accuracy"):
        assert summary[key] == expected[key], key  # bit-identical (JSON floats round-trip)
    for a, b in zip(load_model(saved).params, load_model(ref).params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert load_checkpoint(ck).steps_done == 2000  # it kept checkpointing to the same file


@pytest.fixture
def run(mnist_dir):
    return invoker(mnist_dir)


def _fails_fast(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], result.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--steps", "0"], "steps must be a positive integer"),
        (["--steps", "-5"], "steps must be a positive integer"),
        (["--steps", "100000000000"], "up to 10000000"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--epochs", "10", "--steps", "3"], "either steps or epochs"),
        (["--batch-size", "-1"], "batch size must be between 0"),
        (["--lr", "0"], "learning rate must be a positive number"),
        (["--lr", "-1"], "learning rate must be a positive number"),
        (["--lr", "nan"], "learning rate must be a positive number"),
        (["--lr", "inf"], "learning rate must be a positive number"),
        (["--hidden", "0"], "layer sizes must be between 1 and 65536, got (784, 0, 10)"),
        (["--hidden", "100000"], "layer sizes must be between 1 and 65536"),
        (["--hidden", "32,32"], "has 1 hidden layer(s)"),
        (["--seed", "-1"], "seed must be an integer between 0 and 2**63 - 1"),
        (["--seed", str(2**64)], "seed must be an integer"),
        (["--checkpoint-every", "0", "--checkpoint", "c.npz"], "--checkpoint-every must be a positive"),
        (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint"),
        (["--save", "x.npz", "--checkpoint", "x.npz"], "--save and --checkpoint both write x.npz"),
        (["--save", "/nonexistent-dir/m.npz"], "folder /nonexistent-dir does not exist"),
        (["--checkpoint", "/nonexistent-dir/c.npz"], "cannot write the checkpoint"),
        (["--plot", "/nonexistent-dir/p.png"], "cannot write the plot"),
        (["--resume", "/nonexistent-dir/c.npz"], "no checkpoint at"),
        (["--backend", "tensorflow"], "unknown backend 'tensorflow'"),
        (["--backend", "torch", "--recipe", "rashid"], "only the NumPy backend implements it"),
    ],
)
def test_bad_options_fail_before_any_work(run, args, text, monkeypatch) -> None:
    import pyflux_mnist.mnist as mnist_module

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(mnist_module, "load_mnist", no_data)
    _fails_fast(run("train", *args), text)


def test_batch_larger_than_the_data_is_refused_before_training(run) -> None:
    result = run("train", "--batch-size", "60001", "--steps", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last == "Error: batch size 60001 is larger than the 60000 training samples"


def test_resume_refuses_options_that_change_the_run(run, mnist_dir, tmp_path) -> None:
    ck = tmp_path / "c.npz"
    result = run("train", "--steps", "2", "--hidden", "8", "--checkpoint", str(ck), "--checkpoint-every", "1")
    assert result.exit_code == 0, result.output
    _fails_fast(run("train", "--resume", str(ck), "--lr", "0.1", "--seed", "3"), "drop --lr, --seed")
    _fails_fast(run("train", "--resume", str(ck), "--backend", "torch"), "drop --backend")
    # Matching seed and backend are fine, as is a finished run (nothing left but evaluation).
    result = run("train", "--resume", str(ck), "--seed", "0", "--backend", "numpy", "--json")
    assert result.exit_code == 0, result.output
    model = tmp_path / "m.npz"
    result = run("train", "--resume", str(ck), "--save", str(model))
    assert result.exit_code == 0 and load_model(model).recipe.model.sizes == (784, 8, 10)
    _fails_fast(run("train", "--resume", str(model)), "a model file: use it with evaluate")


def test_diverged_run_writes_no_model_and_keeps_the_old_one(run, tmp_path) -> None:
    """Adam at lr 100 on the TensorFlow tutorial's network explodes (finite but huge) within 60 steps."""
    saved = tmp_path / "m.npz"
    saved.write_bytes(b"previous model")
    result = run(
        "train", "--recipe", "tensorflow-tutorial", "--lr", "100", "--steps", "60", "--save", str(saved)
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith("Error: training diverged: loss is ") and "at step " in last
    assert last.endswith("try a lower learning rate (--lr)")
    assert saved.read_bytes() == b"previous model"
