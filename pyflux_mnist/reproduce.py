"""Run the named recipes and set our test accuracy beside each article's published number.

:func:`reproduce` trains each recipe (on one or several seeds), :func:`render_table` prints the comparison
and :func:`render_markdown` writes ``docs/reproductions.md``: the table from this machine, one paragraph per
recipe (its source, what the article did, what we interpreted: the recipe's ``notes``) and the seeds used.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import REFERENCE, get_backend
from .blas import blas_libraries
from .errors import DivergedError, SpecError
from .mnist import load_mnist
from .prepare import steps_per_epoch, train_samples
from .recipes import RECIPES
from .run import Run, build_run, check_seed, resolve_recipe
from .spec import Recipe
from .training import ProgressFn, train_run

#: Within this many percentage points of the published number counts as reproduced.
TOLERANCE_POINTS = 0.5

#: Recipes with more optimiser steps than this are "expensive": with several seeds they run the first only.
CHEAP_STEPS = 200_000

#: Called before each run with (recipe, seed, index of the run, number of runs).
StartFn = Callable[[Recipe, int, int, int], None]


def total_steps(recipe: Recipe, n_train: int | None = None) -> int:
    """Optimiser steps one run of ``recipe`` takes (the training set's size decides epoch-based ones)."""
    if not recipe.epochs:
        return recipe.steps
    n = train_samples(recipe.data) if n_train is None else n_train
    return (steps_per_epoch(recipe, n) or 1) * recipe.epochs


def is_cheap(recipe: Recipe) -> bool:
    return total_steps(recipe) <= CHEAP_STEPS


#: Decimal places kept in JSON: accuracies (fractions), differences in percentage points, seconds.
ACCURACY_PLACES, POINTS_PLACES, SECONDS_PLACES = 6, 4, 3


def _rounded(x: float | None, places: int) -> float | None:
    return None if x is None else round(float(x), places)


@dataclass
class Row:
    """One recipe's reproduction on one backend, over one or more seeds."""

    recipe: str
    backend: str
    published: float | None
    seeds: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)  # test accuracy per seed
    train_accuracies: list[float] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)  # total seconds per seed
    status: str = "ok"  # ok | skipped (the backend cannot express the recipe) | diverged
    reason: str = ""

    @property
    def test_accuracy(self) -> float | None:
        return float(np.mean(self.accuracies)) if self.accuracies else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (``None`` with fewer than two)."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else None

    @property
    def seconds(self) -> float | None:
        return float(np.mean(self.run_seconds)) if self.run_seconds else None

    @property
    def difference_points(self) -> float | None:
        """Ours minus published, in percentage points."""
        if self.published is None or self.test_accuracy is None:
            return None
        return 100 * (self.test_accuracy - self.published)

    @property
    def verdict(self) -> str:
        d = self.difference_points
        if self.status != "ok":
            return self.status
        if d is None:
            return "no published number"
        if abs(d) <= TOLERANCE_POINTS:
            return "reproduced"
        return "better" if d > 0 else "below"

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON: each figure rounded to what it can mean (an accuracy over 10000 digits
        averaged over seeds to 6 places, points to 4, seconds to 3), so that no ``0.22000000000000908``
        carries float noise into a reader's diff or spreadsheet."""
        return {
            "recipe": self.recipe,
            "backend": self.backend,
            "published": self.published,
            "test_accuracy": _rounded(self.test_accuracy, ACCURACY_PLACES),
            "std": _rounded(self.std, ACCURACY_PLACES),
            "difference_points": _rounded(self.difference_points, POINTS_PLACES),
            "seconds": _rounded(self.seconds, SECONDS_PLACES),
            "seeds": self.seeds,
            "accuracies": [_rounded(a, ACCURACY_PLACES) for a in self.accuracies],
            "train_accuracies": [_rounded(a, ACCURACY_PLACES) for a in self.train_accuracies],
            "run_seconds": [_rounded(t, SECONDS_PLACES) for t in self.run_seconds],
            "status": self.status,
            "reason": self.reason,
            "verdict": self.verdict,
        }


def resolve_names(names: Sequence[str], all_: bool) -> list[str]:
    """The recipes to run, in the registry's order for ``--all``; unknown names are refused up front."""
    if all_ and names:
        raise SpecError("give recipe names or --all, not both")
    if all_:
        return list(RECIPES)
    if not names:
        raise SpecError(f"name the recipes to reproduce, or --all; choose from: {', '.join(RECIPES)}")
    for name in names:
        resolve_recipe(name)
    return list(dict.fromkeys(names))


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; a clear error for anything else."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SpecError(f"--seeds takes integers separated by commas, like 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SpecError(f"--seeds needs distinct seeds, like 0,1,2; got {text!r}")
    return [check_seed(s) for s in seeds]


def reproduce(
    names: Sequence[str],
    backend: str = REFERENCE,
    seeds: Sequence[int] = (0,),
    data: Any = None,
    *,
    expensive_all_seeds: bool = False,
    on_start: StartFn | None = None,
    on_progress: ProgressFn | None = None,
    train_fn: Callable[..., Any] | None = None,
) -> list[Row]:
    """Train each recipe on each seed (expensive recipes: the first seed only, unless told otherwise).

    Every run is built (and checked) before the first one trains, so an unusable backend is refused at
    once; a recipe the backend cannot express becomes a skipped row."""
    train_fn = train_fn or train_run
    get_backend(backend)  # an unknown or unusable backend is refused before anything else
    plan: list[tuple[Row, list[Run]]] = []
    for r in (resolve_recipe(n) for n in names):
        row = Row(recipe=r.name, backend=backend, published=r.published)
        run_seeds = list(seeds) if (expensive_all_seeds or is_cheap(r)) else [seeds[0]]
        try:
            plan.append((row, [build_run(r, backend, seed) for seed in run_seeds]))
        except SpecError as e:  # this backend cannot express this recipe (Rashid's rule)
            row.status, row.reason = "skipped", str(e)
            plan.append((row, []))
    if data is None:
        data = load_mnist()
    n_runs, k = sum(len(runs) for _, runs in plan), 0
    for row, runs in plan:
        for run in runs:
            if on_start is not None:
                on_start(run.recipe, run.seed, k, n_runs)
            k += 1
            try:
                result = train_fn(run, data, on_progress=on_progress)
            except DivergedError as e:
                row.status, row.reason = "diverged", f"seed {run.seed}: {e}"
                break
            row.seeds.append(run.seed)
            row.accuracies.append(result.test_accuracy)
            row.train_accuracies.append(result.train_accuracy)
            row.run_seconds.append(result.seconds)
    return [row for row, _ in plan]


# --- rendering -------------------------------------------------------------------------------------


def _acc(row: Row) -> str:
    if row.test_accuracy is None:
        return "—"
    text = f"{row.test_accuracy:.4f}"
    if row.std is not None:
        text += f" ± {row.std:.4f} ({len(row.accuracies)} seeds)"
    return text


def _cells(row: Row) -> list[str]:
    d = row.difference_points
    return [
        row.recipe,
        "—" if row.published is None else f"{row.published:.4f}",
        _acc(row),
        "—" if d is None else f"{d:+.2f}",
        "—" if row.seconds is None else _duration(row.seconds),
        row.backend,
        row.verdict,
    ]


HEADERS = ["recipe", "published", "ours", "diff (points)", "time", "backend", "verdict"]


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def render_table(rows: Sequence[Row]) -> str:
    """A plain-text table for the terminal; skipped recipes say why underneath."""
    cells = [HEADERS, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{r.recipe}: {r.reason}" for r in rows if r.reason]
    return "\n".join(lines)


def render_markdown_table(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(out)


def machine_description() -> str:
    libs = blas_libraries()
    blas = f", {libs[0]['internal_api']} {libs[0]['version']}" if libs else ""
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, NumPy {np.__version__}{blas}"
    )


def render_markdown(rows: Sequence[Row], *, command: str = "", intro: str = "") -> str:
    """The whole ``docs/reproductions.md``."""
    seeds = sorted({s for r in rows for s in r.seeds})
    lines = [
        "# Reproductions",
        "",
        "Each named recipe reproduces a published MNIST tutorial, quirks included; this page sets our test "
        "accuracy beside the article's. Generated by `pyflux-mnist reproduce"
        + (f" {command}" if command else "")
        + "`.",
        "",
    ]
    if intro:
        lines += [intro, ""]
    lines += [
        f"Machine: {machine_description()}. Date: {_dt.date.today().isoformat()}.",
        "",
        f"Seeds: {', '.join(map(str, seeds)) or 'none'}. With several seeds, ours is the mean ± the sample "
        f"standard deviation; recipes with more than {CHEAP_STEPS:,} steps run the first seed only. "
        f"'reproduced' means within ±{TOLERANCE_POINTS} points of the published number. Times are one run's "
        "total (data preparation, training, evaluation) on a machine shared with other jobs: noisy.",
        "",
        render_markdown_table(rows),
        "",
        "## The recipes",
        "",
    ]
    for row in rows:
        r = resolve_recipe(row.recipe)
        lines += [f"### `{r.name}`", ""]
        if r.source:
            lines += [f"Source: {r.source}.", ""]
        if r.notes:
            lines += [r.notes, ""]
        lines += [_result_sentence(row), ""]
    return "\n".join(lines).rstrip() + "\n"


def _result_sentence(row: Row) -> str:
    if row.status == "skipped":
        return f"Not run on the {row.backend} backend: {row.reason}"
    parts = []
    if row.accuracies:
        per_seed = ", ".join(f"seed {s}: {a:.4f}" for s, a in zip(row.seeds, row.accuracies, strict=True))
        parts.append(f"Ours on the {row.backend} backend: {per_seed}")
        if row.std is not None:
            spread = max(row.accuracies) - min(row.accuracies)
            parts.append(f"mean {row.test_accuracy:.4f}, std {row.std:.4f}, spread {100 * spread:.2f} points")
        if row.published is not None and row.difference_points is not None:
            parts.append(f"{row.difference_points:+.2f} points from the published {row.published:.4f}")
    if row.status == "diverged":
        parts.append(f"diverged: {row.reason}")
    return "; ".join(parts) + "." if parts else ""
