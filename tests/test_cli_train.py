"""The train / tutorial / evaluate / info commands, through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from cli_runs import invoker
from click.testing import CliRunner

from pyflux_mnist import __version__
from pyflux_mnist.backends import backend_names
from pyflux_mnist.cli import cli


@pytest.fixture
def run(mnist_dir):
    return invoker(mnist_dir)


def _one_error_line(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and text in lines[-1], result.output
    assert "Traceback" not in result.output


def test_train_json_and_save_then_evaluate(run, tmp_path) -> None:
    model = tmp_path / "m.npz"
    result = run("train", "--steps", "30", "--save", str(model), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("backend", "recipe", "steps", "seconds", "final_loss", "train_accuracy", "test_accuracy"):
        assert key in out
    assert out["backend"] == "numpy" and out["recipe"] == "flux-tutorial" and out["steps"] == 30
    assert 0.5 < out["test_accuracy"] <= 1

    ev = run("evaluate", str(model), "--json")
    assert ev.exit_code == 0, ev.output
    ev_out = json.loads(ev.stdout)
    assert ev_out["test_accuracy"] == pytest.approx(out["test_accuracy"])
    assert ev_out["trained_with"] == "numpy"
    text = run("evaluate", str(model))
    assert "test accuracy" in text.stdout


def test_train_human_summary_goes_to_stdout(run) -> None:
    result = run("train", "--recipe", "keras", "--steps", "5", "--hidden", "16", "--batch-size", "64")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stdout and "recipe         keras" in result.stdout


def test_tutorial_prints_loss_then_accuracies(run) -> None:
    result = run("tutorial", "--throttle", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("loss(X, Y) = ")
    assert sum(line.startswith("loss(X, Y)") for line in lines) == 200  # every step, the last one once
    assert lines[-2].startswith("accuracy(X, Y) = ")
    acc = float(lines[-1].split("=")[1].split()[0])
    assert acc >= 0.91


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["train", "--steps", "-3"], "steps must be a positive integer"),
        (["train", "--backend", "tensorflow"], "unknown backend 'tensorflow'"),
        (["train", "--recipe", "nope"], "unknown recipe 'nope'"),
        (["train", "--lr", "0"], "learning rate"),
        (["train", "--hidden", "a,b"], "hidden takes widths"),
        (["train", "--save", "/nonexistent-dir/m.npz"], "does not exist"),
    ],
)
def test_bad_options_give_one_line_and_exit_1(run, args, text) -> None:
    _one_error_line(run(*args), text)


def test_flux_without_julia_gives_the_install_hint(run, monkeypatch) -> None:
    monkeypatch.setenv("PYFLUX_MNIST_JULIA", "0")
    result = run("train", "--backend", "flux", "--steps", "1")
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_evaluate_bad_model_file(run, tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"<html>")
    _one_error_line(run("evaluate", str(bad)), "not a pyflux-mnist model file (a text file)")
    _one_error_line(run("evaluate", str(tmp_path / "none.npz")), "no model file")


def test_verbose_shows_the_traceback(mnist_dir) -> None:
    result = CliRunner().invoke(cli, ["--verbose", "train", "--recipe", "nope"])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "Error: unknown recipe" in result.output


def test_usage_errors_exit_2(run) -> None:
    assert run("train", "--no-such-option").exit_code == 2
    # A value of the wrong type is the run's own one line (the same words as the API's), not click's usage.
    result = run("train", "--steps", "many")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: steps must be a whole number, got 'many'"


def test_version_and_info() -> None:
    runner = CliRunner()
    assert __version__ in runner.invoke(cli, ["--version"]).output
    result = runner.invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["version"] == __version__
    assert out["backends"]["numpy"] == "available"
    assert list(out["backends"]) == backend_names()
    assert set(out["settings"]) >= {"PYFLUX_MNIST_DATA", "PYFLUX_MNIST_OFFLINE", "PYTHON_JULIACALL_THREADS"}


def test_python_dash_m_works() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pyflux_mnist", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout


def _bad_data_dir(tmp_path, mnist_dir, name: str, content: bytes):
    """A copy of MNIST (links) with one file replaced by ``content``."""
    from pyflux_mnist.mnist import FILES

    for f in FILES:
        (tmp_path / f"{f}.gz").symlink_to(mnist_dir / f"{f}.gz")
    (tmp_path / f"{name}.gz").unlink()
    (tmp_path / f"{name}.gz").write_bytes(content)
    return tmp_path


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("truncated", "t10k-labels-idx1-ubyte"),
        (b"<!DOCTYPE html><html><body>Not Found</body></html>", "t10k-labels-idx1-ubyte"),
        ("wrong-magic", "t10k-labels-idx1-ubyte"),
        ("other-labels", "not the MNIST t10k-labels-idx1-ubyte"),
    ],
)
def test_train_on_bad_data_gives_one_line(tmp_path, mnist_dir, content, text) -> None:
    import gzip

    good = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    raw = gzip.decompress(good)
    content = {
        "truncated": good[: len(good) // 2],
        "wrong-magic": gzip.compress(b"\x00\x00\x08\x04" + raw[4:]),
        "other-labels": gzip.compress(raw[:8] + bytes(10000)),  # valid IDX, all zeros: not MNIST
    }.get(content, content)
    data = _bad_data_dir(tmp_path, mnist_dir, "t10k-labels-idx1-ubyte", content)
    result = CliRunner().invoke(cli, ["train", "--steps", "1", "--data-dir", str(data)])
    _one_error_line(result, text)
    # the user's folder is never "healed" behind their back
    assert (data / "t10k-labels-idx1-ubyte.gz").read_bytes() == content


def test_train_with_no_verify_accepts_non_mnist_idx(tmp_path, mnist_dir) -> None:
    import gzip

    raw = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data = _bad_data_dir(tmp_path, mnist_dir, "t10k-labels-idx1-ubyte", gzip.compress(raw[:8] + bytes(10000)))
    result = CliRunner().invoke(
        cli, ["train", "--steps", "2", "--no-verify", "--json", "--data-dir", str(data)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_accuracy"] > 0  # all test labels are 0 now


def test_offline_with_missing_data_dir(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["train", "--offline", "--data-dir", str(tmp_path / "none")])
    _one_error_line(result, "does not exist")
    empty_cache = CliRunner().invoke(cli, ["train", "--offline"], env={"PYFLUX_MNIST_DATA": ""})
    _one_error_line(empty_cache, "offline")
