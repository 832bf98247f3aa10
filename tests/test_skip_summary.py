"""Without MNIST the data tests skip, and the run says so in one closing line; in CI they fail instead.

Each case runs pytest on a copy of our ``conftest.py`` in an empty folder (so neither ``../shared`` nor a
cache can supply the data) with three tiny tests: two that need MNIST and one that does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SAMPLE = """
def test_needs_the_folder(mnist_dir):
    pass

def test_needs_the_data(mnist):
    pass

def test_needs_nothing():
    pass
"""


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "checkout" / "tests"
    suite.mkdir(parents=True)
    for name in ("conftest.py", "subset.py"):
        shutil.copy(TESTS / name, suite / name)
    (suite / "test_sample.py").write_text(SAMPLE)
    # Nor Julia: the copied conftest would start it (PYFLUX_MNIST_JULIA=1 in CI), once per child, for nothing.
    dropped = ("CI", "PYFLUX_MNIST_DATA", "PYFLUX_MNIST_JULIA")
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    clean["XDG_CACHE_HOME"] = str(tmp_path / "empty-cache")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_data_skips_and_the_run_says_how_many_and_how_to_get_it(tmp_path) -> None:
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [
        line for line in run.stdout.splitlines() if "skipped because the MNIST files were not found" in line
    ]
    assert lines == [
        "2 test(s) skipped because the MNIST files were not found: run 'pyflux-mnist data download' or set "
        "PYFLUX_MNIST_DATA to a folder with the four IDX files"
    ], run.stdout


@pytest.mark.parametrize("env", [{"CI": "true"}, {"PYFLUX_MNIST_DATA": "/nonexistent/mnist"}])
def test_in_ci_missing_data_is_a_failure(tmp_path, env) -> None:
    run = _pytest(tmp_path, **env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 2 errors" in run.stdout, run.stdout
    assert "skipped because" not in run.stdout


def test_the_child_runs_never_start_julia(tmp_path, monkeypatch) -> None:
    """Issue 21 item 1: with PYFLUX_MNIST_JULIA=1 (CI) each child above started a real Julia (3 starts)."""
    fake = tmp_path / "fake"
    fake.mkdir()
    record = tmp_path / "juliacall_imported"
    (fake / "juliacall.py").write_text(
        f"open({str(record)!r}, 'w').write('yes')\nraise ImportError('stand-in')\n"
    )
    monkeypatch.setenv("PYFLUX_MNIST_JULIA", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake), *sys.path]))
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not record.exists()
