"""``pyflux-mnist data info|download`` through the real click group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from local_mirror import LocalMirror

from pyflux_mnist.cli import cli
from pyflux_mnist.idx import write_idx
from pyflux_mnist.mnist import FILES


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error_line(result: Result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_info_json_on_real_data(mnist_dir: Path) -> None:
    result = _run("data", "info", "--data-dir", str(mnist_dir), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verified"] and report["complete"] and report["directory"] == str(mnist_dir)
    labels = report["files"]["t10k-labels-idx1-ubyte"]
    assert labels["checksum_ok"] and labels["label_counts"][:3] == [980, 1135, 1032]
    assert report["files"]["train-images-idx3-ubyte"]["shape"] == [60000, 28, 28]


def test_info_text(mnist_dir: Path) -> None:
    result = _run("data", "info", "--data-dir", str(mnist_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout.count(", ok") == 4 and "5923 6742" in result.stdout


def test_info_missing_dir() -> None:
    _one_error_line(
        _run("data", "info", "--data-dir", "/nonexistent/mnist"), "/nonexistent/mnist", "does not exist"
    )


def test_info_not_mnist_prints_report_then_fails(tmp_path: Path, mnist_dir: Path) -> None:
    for name in FILES:
        if name != "t10k-labels-idx1-ubyte":
            (tmp_path / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, dtype=np.uint8))
    result = _run("data", "info", "--data-dir", str(tmp_path), "--json")
    assert json.loads(result.stdout)["files"]["t10k-labels-idx1-ubyte"]["checksum_ok"] is False
    _one_error_line(result, "t10k-labels-idx1-ubyte", "not MNIST")


def test_download_offline_with_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)  # else `data download` checks that folder
    line = _one_error_line(_run("data", "download"), str(tmp_path / "pyflux-mnist"), "offline")
    assert "train-images-idx3-ubyte" in line


def test_download_fills_the_cache(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.delenv("PYFLUX_MNIST_OFFLINE")
    with LocalMirror() as mirror:
        for name in FILES:
            mirror.routes[f"/m/{name}.gz"] = (mnist_dir / f"{name}.gz").read_bytes()
        monkeypatch.setenv("PYFLUX_MNIST_MIRRORS", mirror.url("m"))
        result = _run("data", "download")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(tmp_path / "pyflux-mnist")
        again = _run("data", "download")  # already there: verified, nothing fetched
        assert again.exit_code == 0 and sum(mirror.hits.values()) == 4
    assert "MNIST is ready in" in result.stderr
    assert json.loads(_run("data", "info", "--json").stdout)["verified"]
