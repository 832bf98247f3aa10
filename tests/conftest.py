"""Shared fixtures. Tests use the real MNIST files: ``$PYFLUX_MNIST_DATA``, ``../shared/data/mnist``, or the
user's cache (filled by ``pyflux-mnist data download``).

Without them the tests that need them skip, and the run ends with one line saying how many and how to get
the data. In CI (``CI=true``), or when ``$PYFLUX_MNIST_DATA`` is set, missing data fails those tests
instead: a run that quietly skipped half the suite must not pass there."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from subset import Subset


def _start_julia_before_torch() -> None:
    """PythonCall's FAQ reports heap corruption when torch is imported before juliacall (PythonCall.jl
    docs/src/faq.md, "Heap corruption when using PyTorch"), and test_parity_torch.py imports torch when it is
    collected. So when the Julia tests must run (``PYFLUX_MNIST_JULIA=1``, or yes/true/on, as in CI), start
    Julia here, before any test module is collected. A failure is remembered by the bridge and reported by
    the Julia tests."""
    from pyflux_mnist.backends import julia_bridge
    from pyflux_mnist.errors import BackendUnavailable

    if not julia_bridge.required():
        return

    with contextlib.suppress(BackendUnavailable):
        julia_bridge.load()


_start_julia_before_torch()

REPO = Path(__file__).resolve().parent.parent
# Read before any test swaps XDG_CACHE_HOME for a temporary one.
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pyflux-mnist"


def _mnist_dir() -> Path | None:
    for candidate in (
        os.environ.get("PYFLUX_MNIST_DATA"),
        REPO.parent / "shared" / "data" / "mnist",
        USER_CACHE,
    ):
        if candidate and any(
            Path(candidate, f"train-images-idx3-ubyte{ext}").exists() for ext in (".gz", "")
        ):
            return Path(candidate)
    return None


NO_DATA = "real MNIST files not found"
GET_DATA = "run 'pyflux-mnist data download' or set PYFLUX_MNIST_DATA to a folder with the four IDX files"


def _data_required() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1") or bool(os.environ.get("PYFLUX_MNIST_DATA"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = _mnist_dir()
    given = os.environ.get("PYFLUX_MNIST_DATA")
    if given and path != Path(given):
        pytest.fail(f"PYFLUX_MNIST_DATA={given} holds no MNIST files ({GET_DATA})", pytrace=False)
    if path is None:
        if _data_required():
            pytest.fail(f"{NO_DATA}, and CI=true makes that a failure: {GET_DATA}", pytrace=False)
        pytest.skip(f"{NO_DATA}: {GET_DATA}")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line at the end: how many tests skipped for want of MNIST, and how to get it."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if NO_DATA in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} test(s) skipped because the MNIST files were not found: {GET_DATA}",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    """The whole real MNIST, loaded and verified once per test session."""
    from pyflux_mnist.mnist import load_mnist

    return load_mnist(mnist_dir, offline=True)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real cache or the network from a test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.setenv("PYFLUX_MNIST_OFFLINE", "1")


@pytest.fixture(scope="session")
def small_model(mnist):
    """A ReLU/softmax tutorial network in seconds: 40 full-batch Adam steps on 10000 digits (~0.85)."""
    from pyflux_mnist.training import train

    return train("flux-tutorial", data=Subset(mnist, 10000, 1000), steps=40, seed=0).model


@pytest.fixture(scope="session")
def rashid_model(mnist):
    """A sigmoid, squared-error Rashid network: 3000 per-sample steps."""
    from pyflux_mnist.run import Overrides, resolve_recipe
    from pyflux_mnist.training import train

    return train(
        resolve_recipe("rashid", Overrides(steps=3000)), data=Subset(mnist, 3000, 1000), seed=0
    ).model
