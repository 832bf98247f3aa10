"""The command line as the tests run it: in process through click's ``CliRunner`` (fast, and the output
captured), or as a real ``python -m pyflux_mnist`` process (for signals, exit codes and what a shell sees)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from pyflux_mnist.cli import cli

REPO = Path(__file__).resolve().parent.parent


def invoker(mnist_dir: Path) -> Callable[..., Result]:
    """``invoke(*args, data=True)``: the CLI in process, with ``--data-dir mnist_dir`` appended unless
    ``data=False``; exceptions propagate, so a traceback is the test's own failure."""

    def invoke(*args: str, data: bool = True) -> Result:
        extra = ["--data-dir", str(mnist_dir)] if data else []
        return CliRunner().invoke(cli, [*args, *extra], catch_exceptions=False)

    return invoke


def start_cli(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    """``python -m pyflux_mnist ARGS`` from the repository root, stdout and stderr piped as text, with
    ``env`` added to this process's environment. One BLAS thread: on a busy machine OpenBLAS's spinning
    threads make small steps ~100x slower."""
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "pyflux_mnist", *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
