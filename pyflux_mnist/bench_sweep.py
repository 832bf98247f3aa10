"""``pyflux-mnist bench --sweep samples|hidden``: how a step's time grows with the work, per backend.

* ``samples``: the recipe's network and optimiser on a **full batch** of the first N training samples
  (1000 → 60000): the cost of one pass over N samples.
* ``hidden``: the recipe as it is (its batch), with every hidden layer H wide (32 → 1024).

One worker per backend serves every point (a new trainer per point, its first step untimed: JAX compiles
each shape there), the timed repeats interleaved across backends as in ``bench``; the square sgemm is
measured at every point, so each point has its roofline. Per backend: the median ms/step at each point,
the exponent ``k`` of the least-squares fit ``ms ∝ x^k`` on log-log axes, the slope between neighbouring
points (where a curve bends), and the peak RSS after each point. A log-log chart can be written beside the
JSON.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import math
import os
import statistics
from collections.abc import Sequence
from typing import Any

from . import bench as b
from .backends import REFERENCE, backend_status
from .charts import _figure
from .errors import SpecError
from .mnist import load_mnist
from .picture_files import save_picture
from .prepare import prepare
from .run import resolve_recipe
from .spec import Recipe

AXES = ("samples", "hidden")
DEFAULT_POINTS: dict[str, tuple[int, ...]] = {
    "samples": (1000, 2000, 4000, 8000, 15000, 30000, 60000),
    "hidden": (32, 64, 128, 256, 512, 1024),
}
DEFAULT_SWEEP_REPEAT = 3
#: Widest hidden layer a sweep may ask for: a 4096-wide full batch of 60000 is ~1 GB per activation.
MAX_HIDDEN = 4096
#: A timed repeat aims at about this long; steps per repeat are sized from the step's FLOPs at a modest
#: rate (1 to 200 steps), so the small points are not all start-up noise and the large ones not minutes.
REPEAT_TARGET_S = 0.25
PLANNING_GFLOPS = 50.0


def parse_points(text: str | None, axis: str) -> list[int]:
    """``"1000,2000"`` → ``[1000, 2000]`` (sorted, distinct, positive), or the axis's default points."""
    if not text:
        return list(DEFAULT_POINTS[axis])
    try:
        points = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise SpecError(f"--points must be comma-separated positive integers, got {text!r}") from None
    if len(points) < 2 or points[0] < 1:
        raise SpecError(f"--points needs at least two positive integers, got {text!r}")
    return points


def point_recipe(recipe: Recipe, axis: str, x: int) -> Recipe:
    if axis == "samples":
        return recipe.replace(batch_size=0, epochs=0, steps=1)
    sizes = recipe.model.sizes
    return recipe.replace(model={"sizes": (sizes[0], *([x] * (len(sizes) - 2)), sizes[-1])})


def planned_steps(recipe: Recipe, batch: int) -> int:
    seconds = b.flops_per_step(recipe, batch) / (PLANNING_GFLOPS * 1e9) + 2e-4
    return max(1, min(200, round(REPEAT_TARGET_S / seconds)))


def fit_exponent(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[float | None, list[float | None]]:
    """The least-squares slope of log y on log x over the points measured, and each neighbouring slope."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y]
    local = [
        math.log(y1 / y0) / math.log(x1 / x0) if y0 and y1 else None
        for (x0, y0), (x1, y1) in itertools.pairwise(zip(xs, ys, strict=True))
    ]
    if len(pairs) < 2:
        return None, local
    mx = statistics.fmean(p[0] for p in pairs)
    my = statistics.fmean(p[1] for p in pairs)
    sxx = sum((px - mx) ** 2 for px, _ in pairs)
    return sum((px - mx) * (py - my) for px, py in pairs) / sxx, local


def run_sweep(
    backends: list[str] | tuple[str, ...],
    recipe: str | Recipe,
    axis: str,
    points: list[int] | None = None,
    steps: int | None = None,
    repeat: int = DEFAULT_SWEEP_REPEAT,
    threads: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    offline: bool | None = None,
    progress: b.Progress | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    say = progress or (lambda msg: None)
    backends = list(backends)
    threads = b.default_threads() if threads is None else threads
    b.check_options(backends, steps, repeat, threads, seed)
    if axis not in AXES:
        raise SpecError(f"--sweep must be one of {', '.join(AXES)}, got {axis!r}")
    r = resolve_recipe(recipe)
    points = list(DEFAULT_POINTS[axis]) if points is None else points
    data = load_mnist(data_dir, offline=offline)
    n_total = prepare(data, r.data).X_train.shape[1]
    del data
    if axis == "samples" and points[-1] > n_total:
        raise SpecError(f"--points: the recipe has {n_total} training samples, asked for {points[-1]}")
    if axis == "hidden" and (len(r.model.sizes) < 3 or points[-1] > MAX_HIDDEN):
        raise SpecError(f"--sweep hidden needs a hidden layer and widths up to {MAX_HIDDEN}")
    recipes = [point_recipe(r, axis, x) for x in points]
    samples = [x if axis == "samples" else n_total for x in points]
    batches = [p.batch_size or n for p, n in zip(recipes, samples, strict=True)]
    steps_at = [steps or planned_steps(p, n) for p, n in zip(recipes, batches, strict=True)]
    configs = [
        b.bench_recipe(p, 1 + repeat * k, n).to_dict()
        for p, k, n in zip(recipes, steps_at, samples, strict=True)
    ]
    result: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": b.machine_info(threads),
        "settings": {
            "recipe": r.name,
            "sweep": axis,
            "points": points,
            "backends": backends,
            "steps": steps_at,
            "repeat": repeat,
            "threads": threads,
            "seed": seed,
            "samples_per_step": batches,
        },
    }
    base: dict[str, Any] = {
        "seed": seed,
        "data_dir": data_dir,
        "offline": offline,
        "threads": threads,
        "verbose": verbose,
    }
    base |= {"recipe": configs[0], "n_samples": samples[0] if axis == "samples" else None}
    lines: dict[str, dict[str, Any]] = {n: {"backend": n, "status": "ok", "reason": None} for n in backends}
    for line in lines.values():
        line |= {"ms_per_step": [], "spread_pct": [], "peak_rss_mb": []}
    sgemm_best: list[float] = []
    workers: dict[str, b.WorkerProcess] = {}
    started: list[b.WorkerProcess] = []
    try:
        with b.stop_signals_raise():  # SIGTERM and SIGHUP end the workers too, as in bench
            rows: dict[str, dict[str, Any]] = {}
            status = backend_status(Recipe.from_dict(configs[0]))
            b._start_workers(backends, status, base, threads, rows, workers, started, say)
            for name, row in rows.items():
                if row["status"] != "ok":
                    lines[name].update(status=row["status"], reason=row["reason"])
            sgemm = b.WorkerProcess("sgemm", {**base, "backend": "sgemm"}, threads)
            started.append(sgemm)
            result["machine"]["blas"] = sgemm.receive().get("threads", {}).get("blas", [])
            for i, x in enumerate(points):
                say(f"{axis} = {x}: {steps_at[i]} step(s) a repeat")
                if i:
                    for name in list(workers):
                        ready = workers[name].ask(
                            {"cmd": "point", "recipe": configs[i], "n_samples": base["n_samples"] and x}
                        )
                        if ready["event"] != "ready":
                            lines[name].update(
                                status="error", reason=f"at {axis} = {x}: {ready.get('reason')}"
                            )
                            workers.pop(name).stop()
                rows = {n: {"_times": []} for n in workers}
                sgemm_rounds, _ = b._timed_rounds(workers, rows, sgemm, repeat, steps_at[i], say)
                sgemm_best.append(max(sgemm_rounds) if sgemm_rounds else math.nan)
                for name in backends:
                    times = [t / steps_at[i] * 1e3 for t in rows.get(name, {}).get("_times", [])]
                    ok = name in workers and len(times) == repeat
                    if name in rows and rows[name].get("status") == "error":
                        lines[name].update(
                            status="error", reason=f"at {axis} = {x}: {rows[name].get('reason')}"
                        )
                    median = statistics.median(times) if ok else None
                    lines[name]["ms_per_step"].append(median)
                    lines[name]["spread_pct"].append(
                        (max(times) - min(times)) / median * 100 if median else None
                    )
                    rss = workers[name].ask({"cmd": "rss"}).get("peak_rss_mb") if ok else None
                    lines[name]["peak_rss_mb"].append(rss)
            sgemm.ask({"cmd": "finish"})
            sgemm.close()
            for worker in workers.values():
                worker.ask({"cmd": "finish", "evaluate": False})
    except BaseException:
        for worker in started:
            worker.stop()
        raise
    for worker in workers.values():
        worker.close()
    gflop = [b.flops_per_step(p, n) / 1e9 for p, n in zip(recipes, batches, strict=True)]
    roofline = [g / s * 1e3 for g, s in zip(gflop, sgemm_best, strict=True)]
    for line in lines.values():
        line["exponent"], line["local_exponents"] = fit_exponent(points, line["ms_per_step"])
    roof_k, roof_local = fit_exponent(points, roofline)
    result["sweep"] = {
        "axis": axis,
        "points": points,
        "gflop_per_step": gflop,
        "sgemm_gflops": sgemm_best,
        "roofline_ms": roofline,
        "roofline_exponent": roof_k,
        "roofline_local_exponents": roof_local,
        "backends": [lines[n] for n in backends],
    }
    with contextlib.suppress(OSError):
        result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


# --- rendering ----------------------------------------------------------------------------------------


AXIS_LABEL = {"samples": "samples per step (full batch)", "hidden": "hidden width"}


def _columns(result: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    sw, settings = result["sweep"], result["settings"]
    lines = sw["backends"]
    ok = [line for line in lines if any(v is not None for v in line["ms_per_step"])]
    per_step = sw["axis"] != "samples"  # the samples axis is the samples per step already
    head = [sw["axis"], *(["samples/step"] if per_step else []), "steps"]
    head += [f"{line['backend']} ms/step" for line in ok]
    head += ["roofline ms"] + [
        f"{line['backend']} × {REFERENCE}" for line in ok if line["backend"] != REFERENCE
    ]
    numpy_ms = next((line["ms_per_step"] for line in ok if line["backend"] == REFERENCE), None)
    rows = []
    for i, x in enumerate(sw["points"]):
        row = [
            f"{x:,}",
            *([f"{settings['samples_per_step'][i]:,}"] if per_step else []),
            str(settings["steps"][i]),
        ]
        row += [b._fmt(line["ms_per_step"][i], ".3f") for line in ok]
        row.append(b._fmt(sw["roofline_ms"][i], ".3f"))
        for line in ok:
            if line["backend"] != REFERENCE:
                v, ref = line["ms_per_step"][i], numpy_ms[i] if numpy_ms else None
                row.append(b._fmt(v / ref if v and ref else None, ".2f"))
        rows.append(row)
    lead = [""] * (2 if per_step else 1)
    pad = [""] * (len(head) - len(lead) - 2 - len(ok))
    rows.append(["exponent", *lead] + [b._fmt(line["exponent"], ".2f") for line in ok]
                + [b._fmt(sw["roofline_exponent"], ".2f")] + pad)  # fmt: skip
    peak = [max((v for v in line["peak_rss_mb"] if v is not None), default=None) for line in ok]
    rows.append(["peak RSS MB", *lead] + [b._fmt(v, ".0f") for v in peak] + [""] + pad)
    notes = [
        f"{line['backend']}: {line['status']}: {line['reason']}" for line in lines if line["status"] != "ok"
    ]
    for line in ok:
        local = ", ".join(b._fmt(v, ".2f") for v in line["local_exponents"])
        notes.append(f"{line['backend']}: slope between neighbouring points {local}")
    notes.append(
        "roofline: each point's matrix-product FLOPs at the best square sgemm rate measured at that point "
        f"({', '.join(b._fmt(v, '.0f') for v in sw['sgemm_gflops'])} GFLOP/s)"
    )
    return head, rows, notes


def settings_line(result: dict[str, Any]) -> str:
    s = result["settings"]
    what = {
        "samples": "the recipe's network and optimiser on a full batch of the first N samples",
        "hidden": "the recipe with every hidden layer H wide",
    }[s["sweep"]]
    return (
        f"recipe {s['recipe']}, sweep: {what}; {s['repeat']} interleaved "
        f"repeats at each point after 1 warm-up step, seed {s['seed']}"
    )


def render_text(result: dict[str, Any]) -> str:
    title = f"pyflux-mnist bench --sweep {result['settings']['sweep']}, {result['date']}"
    return b.table_text(title, result, settings_line(result), _columns(result), numbers_right=True)


def render_markdown(result: dict[str, Any]) -> str:
    return b.table_markdown(result, settings_line(result), _columns(result), numbers_right=True)


def chart_path(json_path: str) -> str:
    """Where the chart of a sweep saved at ``json_path`` goes: beside it, ``.png`` for ``.json``."""
    root, _ = os.path.splitext(json_path)
    return root + ".png"


def sweep_chart(result: dict[str, Any], path: str) -> None:
    """ms/step against the swept size on log-log axes, one line per backend (its fitted exponent in the
    legend), and the roofline dashed."""

    sw, s = result["sweep"], result["settings"]
    colours = {name: f"C{i}" for i, name in enumerate(s["backends"])}  # matplotlib's cycle, in run order
    with _figure(9, 5.6) as fig:
        ax = fig.add_subplot()
        for line in sw["backends"]:
            pts = [(x, y) for x, y in zip(sw["points"], line["ms_per_step"], strict=True) if y]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            label = f"{line['backend']} (slope {b._fmt(line['exponent'], '.2f')})"
            ax.plot(xs, ys, "o-", lw=2.2, ms=6, color=colours.get(line["backend"]), label=label)
        roof = [(x, y) for x, y in zip(sw["points"], sw["roofline_ms"], strict=True) if y and y == y]
        if roof:
            xs, ys = zip(*roof, strict=True)
            label = f"roofline: square-sgemm rate (slope {b._fmt(sw['roofline_exponent'], '.2f')})"
            ax.plot(xs, ys, "--", lw=1.8, color="#555555", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sw["points"], [f"{x:,}" for x in sw["points"]])
        ax.minorticks_off()
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(AXIS_LABEL[sw["axis"]])
        ax.set_ylabel("milliseconds per training step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper left")
        m = result["machine"]
        load = m.get("load_average_start")
        grows = {"samples": "the samples per step", "hidden": "the hidden layer's width"}[sw["axis"]]
        fig.suptitle(f"How a step's time grows with {grows}: recipe {s['recipe']}")
        ax.set_title(
            f"{m['cpu']}, {b._count(m['threads'], 'thread')}; median of {b._count(s['repeat'], 'repeat')}"
            + (f"; load average {load[0]:.1f} at start" if load else ""),
            color="#464646",
        )
        save_picture(fig, path)
