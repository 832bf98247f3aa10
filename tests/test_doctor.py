"""``pyflux-mnist doctor``: the data, every registered backend, and parity with NumPy, on real MNIST.

Here it runs NumPy against PyTorch. A deliberately perturbed backend (a NumPy trainer whose learning rate is
1% off), registered in a test only, shows the failure path; the Flux path needs Julia (julia-marked, at the
end).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from pyflux_mnist.backends import BACKENDS, julia_bridge
from pyflux_mnist.backends.numpy_backend import NumpyBackend
from pyflux_mnist.cli import cli
from pyflux_mnist.doctor import LOSS_RTOL, N_TEST, check_backends, doctor
from pyflux_mnist.errors import SpecError


class PerturbedBackend(NumpyBackend):
    """NumPy with a learning rate 1% off: a backend whose parity must fail. Registered by a test only."""

    name = "perturbed"

    def trainer(self, recipe, params, X, Y):
        opt = recipe.optimizer
        faster = recipe.replace(optimizer=dataclasses.replace(opt, lr=opt.lr * 1.01))
        return super().trainer(faster, params, X, Y)


@pytest.fixture
def perturbed(monkeypatch):
    monkeypatch.setitem(BACKENDS, "perturbed", f"{__name__}:PerturbedBackend")
    return "perturbed"


def _rows(report: dict, check: str) -> dict[str, dict]:
    return {r["item"]: r for r in report["rows"] if r["check"] == check}


@pytest.mark.torch
def test_numpy_and_torch_pass(mnist_dir) -> None:
    pytest.importorskip("torch")
    result = CliRunner().invoke(cli, ["doctor", "--data-dir", str(mnist_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["failures"] == []
    data = _rows(report, "data")
    assert len(data) == 4 and all(
        r["status"] == "ok" and len(r["values"]["sha256"]) == 64 for r in data.values()
    )
    backends = _rows(report, "backend")
    assert list(backends) == list(BACKENDS)  # every registered backend, in the registry's order
    assert backends["torch"]["status"] == "ok" and backends["torch"]["values"]["version"].startswith("torch ")
    assert backends["numpy"]["values"]["threads"]["BLAS"] >= 1
    parity = _rows(report, "parity")
    assert parity["numpy"]["status"] == "ref" and len(parity["numpy"]["values"]["losses"]) == 10
    torch = parity["torch"]
    assert torch["status"] == "ok"
    assert torch["values"]["max_rel_loss_diff"] < LOSS_RTOL
    assert torch["values"]["predictions_disagree_away_from_ties"] == 0
    assert torch["values"]["n_test"] == N_TEST
    losses = parity["numpy"]["values"]["losses"]
    assert losses[-1] < losses[0]  # it trains
    if julia_bridge.unavailable_reason() is not None:  # says why Flux was not tried
        assert backends["flux"]["status"] == "skip" and "not available" in backends["flux"]["detail"]
        assert parity["flux"]["status"] == "skip"


@pytest.mark.torch
def test_the_table(mnist_dir) -> None:
    pytest.importorskip("torch")
    result = CliRunner().invoke(cli, ["doctor", "--data-dir", str(mnist_dir), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["check", "item", "status", "detail"]
    (torch_row,) = [line for line in lines if line.split()[:2] == ["parity", "torch"]]
    assert torch_row.split()[2] == "ok" and "predictions 1000/1000 agree" in torch_row
    assert any(line.split()[:3] == ["parity", "numpy", "ref"] for line in lines)  # the reference, always


def test_a_perturbed_backend_fails_with_one_clear_line(mnist_dir, perturbed) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--data-dir", str(mnist_dir)])
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("Error: parity perturbed: loss curves differ by ")
    assert f"(max relative), limit {LOSS_RTOL:.0e}" in errors[0]
    # The other backends still pass, and the table says which row failed.
    (row,) = [line for line in result.stdout.splitlines() if line.split()[:2] == ["parity", "perturbed"]]
    assert row.split()[2] == "FAIL"


def test_the_perturbed_backend_is_only_slightly_off(mnist_dir, perturbed) -> None:
    """The failure is caught by the 1e-4 bound, not by a gross error: 1% on the learning rate moves the
    10-step loss curve by well under 1%."""
    report = doctor(str(mnist_dir), ["numpy", "perturbed"])
    (row,) = [r for r in report.rows if r.check == "parity" and r.item == "perturbed"]
    assert row.failed and LOSS_RTOL < row.values["max_rel_loss_diff"] < 1e-2
    assert report.failures() == [f"parity perturbed: {row.detail}"]


class CrashingBackend(NumpyBackend):
    """A backend whose trainer raises something that is not a PyfluxError."""

    name = "crashing"

    def trainer(self, recipe, params, X, Y):
        raise RuntimeError("segment of something\nsecond line")


def test_a_crashing_backend_is_a_failed_row_not_a_traceback(mnist_dir, monkeypatch) -> None:
    monkeypatch.setitem(BACKENDS, "crashing", f"{__name__}:CrashingBackend")
    report = doctor(str(mnist_dir), ["numpy", "crashing"])
    assert report.failures() == ["parity crashing: could not train: RuntimeError: segment of something"]


def test_missing_data_is_one_line_and_parity_is_not_tried(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--data-dir", str(tmp_path), "--backend", "numpy", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["ok"]
    (error,) = result.stderr.splitlines()
    assert (
        error.startswith("Error: data MNIST: train-images-idx3-ubyte, ")
        and "pyflux-mnist data download" in error
    )
    assert [r["status"] for r in report["rows"] if r["check"] == "parity"] == ["skip"]


def test_damaged_data_fails(tmp_path, mnist_dir) -> None:
    for f in mnist_dir.iterdir():
        if "idx" in f.name:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    (labels,) = tmp_path.glob("t10k-labels-idx1-ubyte*")
    raw = bytearray(labels.read_bytes())
    raw[-1] ^= 0xFF
    labels.write_bytes(bytes(raw))
    report = doctor(str(tmp_path), ["numpy"])
    assert not report.ok and len(report.failures()) == 1 and "t10k-labels-idx1-ubyte" in report.failures()[0]


def test_a_backend_named_but_unavailable_fails(mnist_dir, monkeypatch) -> None:
    """Issue 21 item 6: ``doctor --backend flux`` without Julia printed ``skip`` and exited 0, "ok": true."""
    monkeypatch.setenv(julia_bridge.JULIA_SWITCH, "0")  # no Julia, on any machine
    result = CliRunner().invoke(cli, ["doctor", "--backend", "flux", "--data-dir", str(mnist_dir), "--json"])
    assert result.exit_code == 1, result.output
    assert "Error: backend flux: not available: the Flux backend is switched off" in result.output
    rows = doctor(str(mnist_dir), ["flux"]).rows
    assert [(r.item, r.status) for r in rows if r.check == "backend"] == [("flux", "FAIL")]
    # Unnamed (every backend), an unavailable one is still a skip, as before.
    rows, _ = check_backends(["flux"])
    assert [(r.item, r.status) for r in rows] == [("flux", "skip")]


def test_a_near_miss_backend_name_gets_did_you_mean() -> None:
    """Issue 23 item 8: ``doctor --backend pytorch`` answers with the registry's "did you mean"."""
    result = CliRunner().invoke(cli, ["doctor", "--backend", "pytorch"])
    assert result.exit_code == 2 and "did you mean 'torch'?" in result.output, result.output
    with pytest.raises(SpecError, match="did you mean 'torch'"):
        doctor(None, ["pytorch"])


def test_unknown_backend_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["doctor", "--backend", "tensorflow"])
    assert result.exit_code == 2 and "tensorflow" in result.output
    with pytest.raises(SpecError, match="unknown backend"):
        doctor(None, ["tensorflow"])


# --- the Flux path: needs Julia + Flux (skipped here, with the reason) ------------------------------------

REQUIRED = julia_bridge.required()
_reason = julia_bridge.unavailable_reason()


@pytest.mark.julia
@pytest.mark.skipif(_reason is not None and not REQUIRED, reason=f"Flux backend unavailable: {_reason}")
def test_flux_parity(mnist_dir) -> None:
    report = doctor(str(mnist_dir), ["numpy", "flux"])
    rows = {(r.check, r.item): r for r in report.rows}
    assert rows[("backend", "flux")].status == "ok", rows[("backend", "flux")].detail
    assert rows[("backend", "flux")].values["version"].startswith("Flux ")
    flux = rows[("parity", "flux")]
    assert flux.status == "ok", flux.detail
    assert flux.values["max_rel_loss_diff"] < LOSS_RTOL
    assert flux.values["predictions_disagree_away_from_ties"] == 0
    assert report.ok, report.failures()
    assert np.isfinite(flux.values["last_loss"])
