"""One training run for ``serve``, in its own process: ``python -m pyflux_mnist.web.train_worker``.

Why a process and not a thread of the server: a backend that crashes (Julia, a native library) cannot take
the server down; juliacall and torch each get a fresh interpreter (they must not be imported in the wrong
order into one); the server can keep its own BLAS at one thread for fast predictions while the run uses
all of them; and Stop is the package's own Ctrl-C handling (SIGINT: stop at the next step boundary).

Reads one JSON object on stdin: ``run`` (:meth:`pyflux_mnist.run.Run.to_json`: the run the server
checked), ``data_dir``, ``output``. Writes JSON
lines on stdout: ``{"event": "progress", "step", "total", "loss"}`` per chunk of steps, then one of
``{"event": "done", "test_accuracy", "seconds"}`` (the model and its loss curve saved to ``output``),
``{"event": "stopped", "message"}`` (exit 130) or ``{"event": "error", "message"}`` (exit 1). Anything
else the libraries print goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from ..child import protocol_stream, send
from ..errors import INTERRUPT_EXIT, PyfluxError, TrainingInterrupted
from ..mnist import load_mnist
from ..run import Run
from ..training import train_run
from .state import save_trained


def run(spec: dict[str, Any], out: IO[str]) -> int:
    def progress(done: int, total: int, loss: float) -> None:
        send(out, event="progress", step=done, total=total, loss=loss)

    try:
        data = load_mnist(spec.get("data_dir"))
        result = train_run(Run.from_json(spec["run"]), data, on_progress=progress)
        save_trained(result, Path(spec["output"]))
    except (TrainingInterrupted, KeyboardInterrupt) as e:
        send(out, event="stopped", message=str(e) or "interrupted")
        return INTERRUPT_EXIT
    except PyfluxError as e:
        send(out, event="error", message=str(e))
        return 1
    except OSError as e:
        send(out, event="error", message=f"cannot save the model: {e.strerror or e}")
        return 1
    send(out, event="done", test_accuracy=result.test_accuracy, seconds=result.seconds)
    return 0


#: How much the run yields to the server: the class's answers come before the run's steps.
NICENESS = 10


def main() -> None:
    # A run shares the cores with the server: at a lower priority it takes what the answers leave (a
    # drawing's answer is milliseconds of work that a training step would otherwise make wait).
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice on Windows
        os.nice(NICENESS)
    out = protocol_stream()
    try:
        spec = json.loads(sys.stdin.read())
        code = run(spec, out)
    except KeyboardInterrupt:  # Stop pressed before training began
        send(out, event="stopped", message="stopped before the first step")
        code = INTERRUPT_EXIT
    sys.exit(code)


if __name__ == "__main__":
    main()
