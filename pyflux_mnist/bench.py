"""``pyflux-mnist bench``: Flux vs NumPy vs PyTorch on the same recipe, fairly and reproducibly.

Fairness, by construction:

* Every backend trains the same recipe from the same initial weights (drawn from ``seed``, checked by a hash
  each worker reports) on the same prepared data, in the same batch order.
* Each backend runs in its own process (:mod:`pyflux_mnist.bench_worker`), started with
  ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``threads`` before any library loads;
  torch gets ``torch.set_num_threads(threads)``, Julia gets ``threads`` threads and ``threads`` BLAS
  threads. Each worker reports the thread counts it actually runs with.
* The timed repeats are **interleaved**: round 1 runs every backend once, then round 2, and so on, with the
  backends in a rotating order. A burst of load from something else on the machine then hits every backend
  in the same round, and the ratios (taken round by round, then the median) stay meaningful even when the
  absolute times do not.
* The roofline is measured in the same rounds: a square float32 matrix product with the same BLAS and
  thread count, giving this machine's sgemm GFLOP/s right now, and so the time per step that the model's
  matrix products alone would need at that rate. So is a truer bound (:mod:`.bench_bound`): the step's
  own products on the same BLAS, and the bytes it must move at the bandwidth measured alongside.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import settings
from .atomic import atomic_write
from .backends import REFERENCE, backend_names, backend_status, check_name, library_versions
from .bench_bound import bound_summary
from .bench_worker import SGEMM_N
from .errors import STOP_SIGNALS, SpecError, TrainingInterrupted
from .mnist import load_mnist
from .prepare import prepare, steps_per_epoch
from .recipes import DEFAULT_RECIPE
from .run import check_seed, resolve_recipe
from .spec import Recipe

#: Every registered backend, in the registry's order.
DEFAULT_BACKENDS = tuple(backend_names())
DEFAULT_REPEAT = 5
#: Pause between two timed runs, so one process's spinning BLAS/OpenMP threads are asleep before the next.
SETTLE_S = 0.2
#: Seconds a worker gets to exit after SIGTERM before it is killed.
STOP_WAIT_S = 1.0

Progress = Callable[[str], None]


# --- what is measured ---------------------------------------------------------------------------------


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


#: Timed steps per repeat by default: this many full-batch steps, else one epoch of at most EPOCH_STEPS_MAX.
FULL_BATCH_STEPS = 10
EPOCH_STEPS_MAX = 2000


def default_steps(recipe: Recipe, n_samples: int) -> int:
    """Timed steps per repeat: :data:`FULL_BATCH_STEPS` full-batch steps, else one epoch (at most
    :data:`EPOCH_STEPS_MAX` steps)."""
    if recipe.batch_size == 0:
        return FULL_BATCH_STEPS
    return min(steps_per_epoch(recipe, n_samples) or EPOCH_STEPS_MAX, EPOCH_STEPS_MAX)


def flops_per_step(recipe: Recipe, batch: int) -> float:
    """Floating-point operations of the matrix products in one training step on ``batch`` samples.

    Per layer ``in → out``: the forward product and the weight gradient, ``2·batch·in·out`` each, and the
    gradient with respect to the layer's input (not needed for the first layer), another ``2·batch·in·out``.
    Element-wise work (activations, softmax, optimiser) is not counted: it is small next to the products.
    """
    sizes = recipe.model.sizes
    total = 0.0
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        products = 2 if layer == 0 else 3
        total += products * 2.0 * batch * n_in * n_out
    return total


def bench_recipe(recipe: Recipe, total_steps: int, n_samples: int) -> Recipe:
    """``recipe`` made long enough for ``total_steps``, keeping its batch order (epochs stay epochs)."""
    per_epoch = steps_per_epoch(recipe, n_samples)
    if recipe.epochs and per_epoch and recipe.batch_size:
        return recipe.replace(epochs=-(-total_steps // per_epoch))
    return recipe.replace(steps=total_steps, epochs=0)


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, cores, load, Python and library versions; the BLAS details come from the workers."""

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": default_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threads,
        "openblas_env": {s.name: s.get() for s in settings.OPENBLAS_VARS if s.get() is not None},
    }
    with contextlib.suppress(OSError):
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    info.update(library_versions())
    return info


# --- the worker processes -----------------------------------------------------------------------------


class WorkerProcess:
    """One ``bench_worker`` subprocess and its JSON-lines conversation."""

    def __init__(self, name: str, config: dict[str, Any], threads: int) -> None:
        self.name = name
        env = dict(os.environ)
        for var in settings.THREAD_VARS:
            env[var.name] = str(threads)
        env[settings.BLAS_THREADS.name] = str(threads)  # the Julia bridge pins both sides to this
        env[settings.JULIA_THREADS.name] = str(threads)
        env.pop(settings.JULIACALL_THREADS.name, None)  # the bridge derives it from the line above
        root = str(Path(__file__).resolve().parent.parent)
        path = settings.PYTHONPATH.raw(env)
        env[settings.PYTHONPATH.name] = root + (os.pathsep + path if path else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyflux_mnist.bench_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the worker's own messages go straight to our stderr
            env=env,
            text=True,
            bufsize=1,
            # Its own session: the terminal's Ctrl-C reaches only us, and we end the workers (see stop), so
            # no worker prints a traceback of its own or finishes a long step first. SIGTERM and SIGHUP to
            # us end them the same way (stop_signals_raise); if we die outright, the kernel ends them
            # (bench_worker.die_with_parent).
            start_new_session=True,
        )
        self.send({**config, "parent": os.getpid()})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"event": "error", "reason": f"the worker process exited with code {code}"}
        return json.loads(line)

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self.send(message)
        except (BrokenPipeError, OSError):
            return {"event": "error", "reason": f"the worker process exited with code {self.proc.wait()}"}
        return self.receive()

    def close(self) -> None:
        """End a worker that has answered ``finish`` (or failed): it exits by itself."""
        self._close_pipes()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """End a worker now, whatever it is doing (Ctrl-C, or an error in the parent)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a worker that died leaves a broken pipe
                    stream.close()


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While workers run, SIGTERM and SIGHUP raise, as Ctrl-C does, so the workers are ended with us (their
    own session keeps every signal sent to our process group from them) and the command ends in one line
    with 128 + the signal. Off the main thread no handler can be installed; nothing changes there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise TrainingInterrupted(STOP_SIGNALS[signum], exit_code=128 + signum)

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS if s != signal.SIGINT}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- the benchmark ------------------------------------------------------------------------------------


#: Bounds on the timed steps per repeat and on the repeats: a worker draws a repeat's batches before its
#: clock starts (an index array per step), so --steps 100000000 would fill memory before timing anything.
MAX_BENCH_STEPS = 100_000
MAX_REPEAT = 1000


def check_options(backends: list[str], steps: int | None, repeat: int, threads: int, seed: int) -> None:
    if not backends:
        raise SpecError("--backends needs at least one backend name")
    for name in backends:
        check_name(name)
    if len(set(backends)) != len(backends):
        raise SpecError(f"a backend is listed twice in --backends: {','.join(backends)}")
    if steps is not None and not 1 <= steps <= MAX_BENCH_STEPS:
        raise SpecError(f"--steps must be a positive integer up to {MAX_BENCH_STEPS}, got {steps}")
    if not 1 <= repeat <= MAX_REPEAT:
        raise SpecError(f"--repeat must be a positive integer up to {MAX_REPEAT}, got {repeat}")
    if threads < 1:
        raise SpecError(f"--threads must be a positive integer, got {threads}")
    check_seed(seed)


def failed_rows(result: dict[str, Any]) -> list[str]:
    """``"name: reason"`` for each backend whose worker failed (``unavailable`` is not a failure)."""
    rows = result.get("results") or result.get("sweep", {}).get("backends", [])
    return [f"{r['backend']}: {r.get('reason')}" for r in rows if r.get("status") == "error"]


def run_bench(
    backends: list[str] | tuple[str, ...] = DEFAULT_BACKENDS,
    recipe: str | Recipe = DEFAULT_RECIPE,
    steps: int | None = None,
    repeat: int = DEFAULT_REPEAT,
    threads: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    offline: bool | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result (see ``docs/benchmarks.md`` for its shape).

    A worker that fails becomes an ``error`` row with a one-line reason (its traceback only if ``verbose``).
    """

    say = progress or (lambda msg: None)
    backends = list(backends)
    threads = default_threads() if threads is None else threads
    check_options(backends, steps, repeat, threads, seed)
    r = resolve_recipe(recipe)
    # Fail here, in one line, if the data is missing; the workers load it again (from the same files).
    data = load_mnist(data_dir, offline=offline)
    n_samples = prepare(data, r.data).X_train.shape[1]
    del data
    steps = default_steps(r, n_samples) if steps is None else steps
    per_epoch = steps_per_epoch(r, n_samples)
    config_recipe = bench_recipe(r, 1 + repeat * steps, n_samples)
    batch = r.batch_size or n_samples

    result: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(threads),
        "settings": {
            "recipe": r.name,
            "backends": backends,
            "steps": steps,
            "repeat": repeat,
            "threads": threads,
            "seed": seed,
            "batch_size": r.batch_size,
            "samples_per_step": batch,
            "steps_per_epoch": per_epoch,
            "warmup_steps": 1,
        },
    }
    base = {"recipe": config_recipe.to_dict(), "seed": seed, "data_dir": data_dir, "offline": offline}
    base["threads"] = threads
    base["verbose"] = verbose
    rows: dict[str, dict[str, Any]] = {}
    workers: dict[str, WorkerProcess] = {}
    started: list[WorkerProcess] = []  # every process, ended at once if anything (Ctrl-C) interrupts
    try:
        with stop_signals_raise():
            # A backend that cannot express the recipe is unavailable too.
            _start_workers(
                backends, backend_status(config_recipe), base, threads, rows, workers, started, say
            )
            sgemm = WorkerProcess("sgemm", {**base, "backend": "sgemm"}, threads)
            started.append(sgemm)
            result["machine"]["blas"] = sgemm.receive().get("threads", {}).get("blas", [])
            bound_cmd = {"cmd": "bound", "recipe": r.to_dict(), "batch": batch}
            sgemm_rounds, bound_rounds = _timed_rounds(workers, rows, sgemm, repeat, steps, say, bound_cmd)
            sgemm.ask({"cmd": "finish"})
            sgemm.close()
            _finish_workers(workers, rows, say)
    except BaseException:
        for worker in started:
            worker.stop()
        raise
    for worker in workers.values():
        worker.close()

    result["roofline"] = roofline = roofline_bound(flops_per_step(r, batch) / 1e9, sgemm_rounds, per_epoch)
    result["bound"] = bound = bound_summary(r, batch, bound_rounds)
    reference_times = rows.get(REFERENCE, {}).get("_times")
    reference_ms = [t / steps * 1e3 for t in reference_times] if reference_times else None
    result["results"] = [
        _finish_row(rows[n], reference_ms, roofline, steps, batch, per_epoch, bound) for n in backends
    ]
    with contextlib.suppress(OSError):
        result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _start_workers(
    backends: list[str],
    status: dict[str, str | None],
    base: dict[str, Any],
    threads: int,
    rows: dict[str, dict[str, Any]],
    workers: dict[str, WorkerProcess],
    started: list[WorkerProcess],
    say: Progress,
) -> None:
    """Start one worker per available backend (data, import, init, first step), one after the other, and
    fill ``rows`` (every backend), ``workers`` (those ready) and ``started`` (every process)."""
    for name in backends:
        rows[name] = {"backend": name, "status": "ok", "reason": None}
        if status.get(name) is not None:
            rows[name].update(status="unavailable", reason=status[name])
            say(f"{name}: unavailable: {status[name]}")
            continue
        say(f"{name}: starting (data, import, init, first step)")
        worker = WorkerProcess(name, {**base, "backend": name}, threads)
        started.append(worker)
        ready = worker.receive()
        if ready["event"] != "ready":
            rows[name].update(status=ready["event"], reason=ready.get("reason"))
            say(f"{name}: {ready['event']}: {ready.get('reason')}")
            worker.close()
            continue
        workers[name] = worker
        rows[name].update(_ready_fields(ready))
        rows[name]["_times"] = []
        say(f"{name}: ready, set-up {rows[name]['setup_seconds']:.2f} s")


def _timed_rounds(
    workers: dict[str, WorkerProcess],
    rows: dict[str, dict[str, Any]],
    sgemm: WorkerProcess,
    repeat: int,
    steps: int,
    say: Progress,
    bound_cmd: dict[str, Any] | None = None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """``repeat`` rounds: every worker runs ``steps`` steps (in a rotating order), then the sgemm and (with
    ``bound_cmd``) the bound's measurements; returns the sgemm GFLOP/s and the bound's measurement of each
    round. A worker that fails leaves ``workers`` with its row saying why."""
    sgemm_rounds: list[float] = []
    bound_rounds: list[dict[str, Any]] = []
    for round_no in range(repeat):
        order = list(workers)
        if order:
            k = round_no % len(order)
            order = order[k:] + order[:k]
        for name in order:
            answer = workers[name].ask({"cmd": "run", "steps": steps})
            if answer["event"] != "ran":
                rows[name].update(status="error", reason=answer.get("reason"))
                say(f"{name}: error: {answer.get('reason')}")
                workers.pop(name).close()
                continue
            rows[name]["_times"].append(answer["seconds"])
            rows[name]["final_loss"] = answer["last_loss"]
            time.sleep(SETTLE_S)
        answer = sgemm.ask({"cmd": "sgemm"})
        if answer["event"] == "sgemm":
            sgemm_rounds.append(answer["gflops"])
        if bound_cmd is not None:
            answer = sgemm.ask(bound_cmd)
            if answer["event"] == "bound":
                bound_rounds.append({k: v for k, v in answer.items() if k != "event"})
        time.sleep(SETTLE_S)
        say(
            f"round {round_no + 1}/{repeat}: "
            + ", ".join(f"{n} {rows[n]['_times'][-1] / steps * 1e3:.2f} ms/step" for n in workers)
            + (f", sgemm {sgemm_rounds[-1]:.0f} GFLOP/s" if sgemm_rounds else "")
        )
    return sgemm_rounds, bound_rounds


def _finish_workers(
    workers: dict[str, WorkerProcess], rows: dict[str, dict[str, Any]], say: Progress
) -> None:
    """Each worker evaluates its trained network (train and test accuracy) and reports its peak memory."""
    for name, worker in list(workers.items()):
        say(f"{name}: evaluating")
        answer = worker.ask({"cmd": "finish"})
        if answer["event"] != "finished":
            rows[name].update(status="error", reason=answer.get("reason"))
        else:
            rows[name].update({k: v for k, v in answer.items() if k != "event"})


def roofline_bound(gflop: float, sgemm_rounds: list[float], per_epoch: int | None) -> dict[str, Any]:
    """The time per step the matrix products would take at the **best** sgemm rate of the whole run.

    Not each round's own rate, nor the median: under load one round's sgemm fell to half another's (66 →
    30 GFLOP/s), and the slow round's "bound" then had a backend beat it (0.92 ×)."""
    sgemm_gflops = max(sgemm_rounds) if sgemm_rounds else math.nan
    roofline: dict[str, Any] = {
        "gflop_per_step": gflop,
        "sgemm_gflops": sgemm_gflops,
        "sgemm_rate_used": "best of the run",
        "sgemm_gflops_rounds": sgemm_rounds,
        "sgemm_size": SGEMM_N,
        "ms_per_step": gflop / sgemm_gflops * 1e3 if sgemm_rounds else math.nan,
    }
    if per_epoch:
        roofline["seconds_per_epoch"] = roofline["ms_per_step"] * per_epoch / 1e3
    return roofline


def _ready_fields(ready: dict[str, Any]) -> dict[str, Any]:
    setup = ready["setup"]
    return {
        "version": ready.get("version"),
        "setup": setup,
        "setup_seconds": sum(setup[k] for k in ("import", "init", "first_step")),
        "data_seconds": ready["data_seconds"],
        "first_loss": ready["first_loss"],
        "init_sha256": ready["init_sha256"],
        "rss_after_data_mb": ready["rss_after_data_mb"],
        "threads": ready["threads"],
    }


def _finish_row(
    row: dict[str, Any],
    reference_ms: list[float] | None,
    roofline: dict[str, Any],
    steps: int,
    batch: int,
    per_epoch: int | None,
    bound: dict[str, Any] | None = None,
) -> dict[str, Any]:
    times = row.pop("_times", None)
    if row["status"] != "ok" or not times:
        return row
    per_step = [t / steps * 1e3 for t in times]
    median = statistics.median(per_step)
    row.update(
        ms_per_step=median,
        ms_per_step_min=min(per_step),
        ms_per_step_max=max(per_step),
        ms_per_step_repeats=per_step,
        spread_pct=(max(per_step) - min(per_step)) / median * 100,
        samples_per_second=batch / median * 1e3,
        steps_timed=steps * len(times),
    )
    if per_epoch:
        row["seconds_per_epoch"] = median * per_epoch / 1e3
    if roofline["sgemm_gflops_rounds"]:  # against the best sgemm rate of the run (see run_bench)
        row["ratio_to_roofline"] = median / roofline["ms_per_step"]
    if bound and bound.get("ms_per_step"):
        row["ratio_to_bound"] = median / bound["ms_per_step"]
    if reference_ms and len(reference_ms) == len(per_step):  # round by round again
        row["ratio_to_numpy"] = statistics.median(t / b for t, b in zip(per_step, reference_ms, strict=True))
    return row


# --- rendering ----------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str, missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def _columns(result: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """The table's header, its rows and the notes printed under it (long reasons, what the bounds are)."""
    per_epoch = result["settings"].get("steps_per_epoch")
    epoch_recipe = result["settings"]["batch_size"] != 0
    bound = result.get("bound") or {}
    head = ["backend", "status", "ms/step", "spread", "samples/s"]
    if epoch_recipe and per_epoch:
        head.append("s/epoch")
    head += [
        "× roofline",
        "× bound",
        f"× {REFERENCE}",
        "set-up s",
        "final loss",
        "train acc",
        "test acc",
        "peak RSS MB",
    ]
    rows, notes = [], []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append([r["backend"], r["status"]] + [""] * (len(head) - 2))
            notes.append(f"{r['backend']}: {r['status']}: {r.get('reason')}")
            continue
        s = r["setup"]
        setup = f"{r['setup_seconds']:.2f} ({s['import']:.2f}+{s['init']:.2f}+{s['first_step']:.2f})"
        line = [
            r["backend"],
            "ok",
            _fmt(r.get("ms_per_step"), ".2f"),
            f"±{r['spread_pct'] / 2:.0f}%",
            _fmt(r.get("samples_per_second"), ",.0f"),
        ]
        if epoch_recipe and per_epoch:
            line.append(_fmt(r.get("seconds_per_epoch"), ".2f"))
        line += [
            _fmt(r.get("ratio_to_roofline"), ".2f"),
            _fmt(r.get("ratio_to_bound"), ".2f"),
            _fmt(r.get("ratio_to_numpy"), ".2f"),
            setup,
            _fmt(r.get("final_loss"), ".5f"),
            _fmt(r.get("train_accuracy"), ".4f"),
            _fmt(r.get("test_accuracy"), ".4f"),
            _fmt(r.get("peak_rss_mb"), ".0f"),
        ]
        rows.append(line)
    roof = result["roofline"]
    for name, status, ms, epoch_s in (
        ("roofline", "sgemm", roof.get("ms_per_step"), roof.get("seconds_per_epoch")),
        ("bound", bound.get("wall", ""), bound.get("ms_per_step"), None),
    ):
        if name == "bound" and not bound:  # a result saved before the bound existed
            continue
        line = [name, status, _fmt(ms, ".2f"), "", ""]
        if epoch_recipe and per_epoch:
            line.append(_fmt(epoch_s if epoch_s is not None else _per_epoch(ms, per_epoch), ".2f"))
        line += [
            _fmt(_ratio(ms, roof.get("ms_per_step")), ".2f"),
            _fmt(_ratio(ms, bound.get("ms_per_step")), ".2f"),
        ]
        rows.append(line + [""] * (len(head) - len(line)))
    notes.append(
        "ms/step: the median of the repeats (spread: half the range); set-up: import + init + first step; "
        "× roofline, × bound: the median over each bound; × numpy: round by round, then the median"
    )
    notes += _bound_notes(roof, bound)
    return head, rows, notes


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _per_epoch(ms: float | None, per_epoch: int) -> float | None:
    return None if ms is None else ms * per_epoch / 1e3


def _bound_notes(roof: dict[str, Any], bound: dict[str, Any]) -> list[str]:
    """What the roofline and the bound rows are made of, one line each."""
    rate = f"roofline: {roof['gflop_per_step']:.3f} GFLOP/step at {roof['sgemm_gflops']:.0f} GFLOP/s"
    rounds = roof.get("sgemm_gflops_rounds") or []
    if roof.get("sgemm_rate_used") and len(rounds) > 1:  # older result files used each round's own rate
        size = roof.get("sgemm_size", SGEMM_N)
        rate += f" (square {size}³: best sgemm of {len(rounds)} rounds; lowest {min(rounds):.0f})"
    notes = [rate]
    if bound:
        parts = ", ".join(
            f"{p['product']} {p['seconds'] * 1e3:.2f} ms ({p['how']})" for p in bound["products"]
        )
        notes.append(
            f"bound: the larger of the step's own products, {bound['products_ms']:.2f} ms at "
            f"{bound['products_gflops']:.0f} GFLOP/s on this BLAS ({parts}), and memory, "
            f"{bound['memory_ms']:.2f} ms ({bound['bytes_per_step'] / 1e6:.1f} MB a step at "
            f"{bound['bandwidth_gbs']:.0f} GB/s, copying {bound['copy_bytes'] / 1e6:.0f} MB)"
        )
    return notes


def machine_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    blas: dict[str, Any] = next((b for b in m.get("blas", []) if b.get("user_api") == "blas"), {})
    blas_text = f"{blas.get('internal_api')} {blas.get('version')} ({blas.get('architecture')} kernels)"
    load = m.get("load_average_start")
    return (
        f"{m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} CPUs, {m['threads']} BLAS thread(s); "
        f"NumPy {m['numpy']} with {blas_text}; "
        + "".join(f"{dist} {m.get(dist) or 'not installed'}; " for dist in library_versions())
        + f"Python {m['python']}"
        + (f"; load average at start {load[0]}" if load else "")
    )


def settings_line(result: dict[str, Any]) -> str:
    s = result["settings"]
    return (
        f"recipe {s['recipe']}, {_count(s['samples_per_step'], 'sample')}/step, {s['repeat']} interleaved "
        f"repeats of {_count(s['steps'], 'step')} after 1 warm-up step, seed {s['seed']}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n:,} {noun}s"


def table_text(
    title: str,
    result: dict[str, Any],
    settings: str,
    table: tuple[list[str], list[list[str]], list[str]],
    numbers_right: bool = False,
) -> str:
    """A result as the terminal shows it: title, machine and settings lines, the table, the notes under it
    (a run's table and a sweep's share it; a sweep's columns are all numbers, set right)."""
    head, rows, notes = table
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        pad = [c.rjust(w) if numbers_right else c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(pad).rstrip()

    lines = [title, machine_line(result), settings, "", line(head), "  ".join("-" * w for w in widths)]
    lines += [line(r) for r in rows]
    return "\n".join([*lines, "", *notes]).rstrip() + "\n"


def table_markdown(
    result: dict[str, Any],
    settings: str,
    table: tuple[list[str], list[list[str]], list[str]],
    numbers_right: bool = False,
) -> str:
    """The same as Markdown, for ``--markdown`` (docs/benchmarks.md's sections)."""
    head, rows, notes = table
    lines = [
        f"*{result['date']}* — {machine_line(result)}.",
        "",
        f"{settings}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if numbers_right else "---" for _ in head) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    lines += [""] + [f"* {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_text(result: dict[str, Any]) -> str:
    # Long cells (a backend's reason, what a bound is made of) are notes under the table, not columns.
    title = f"pyflux-mnist bench, {result['date']}"
    return table_text(title, result, settings_line(result), _columns(result))


def render_markdown(result: dict[str, Any]) -> str:
    return table_markdown(result, settings_line(result), _columns(result))


def write_json(result: dict[str, Any], path: str) -> None:
    with atomic_write(path) as f:
        f.write((json.dumps(result, indent=2) + "\n").encode())


def write_markdown(
    result: dict[str, Any], path: str, render: Callable[[dict[str, Any]], str] | None = None
) -> None:
    """Write the Markdown table (``render``: another renderer, e.g. a sweep's) to ``path``; if that file
    already has the markers ``<!-- bench:RECIPE -->`` and ``<!-- /bench:RECIPE -->`` (a sweep:
    ``bench:RECIPE:sweep-AXIS``), replace only what lies between them (how ``docs/benchmarks.md`` gets its
    tables)."""
    sweep = result.get("sweep")
    table = (render or render_markdown)(result)
    section = result["settings"]["recipe"] + (f":sweep-{sweep['axis']}" if sweep else "")
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = table
    target = Path(path)
    if target.is_file():
        old = target.read_text(encoding="utf-8")
        i, j = old.find(start), old.find(end)
        if 0 <= i < j:
            text = old[: i + len(start)] + "\n" + table + old[j:]
    with atomic_write(path) as f:
        f.write(text.encode())
