"""``reproduce``: train the named tutorial recipes and compare with each article's published accuracy."""

from __future__ import annotations

import sys

import click

from ..atomic import atomic_write
from ..errors import SpecError, TrainingInterrupted
from ..mnist import load_mnist
from ..recipes import RECIPES
from ..reproduce import CHEAP_STEPS, parse_seeds, render_markdown, render_table, resolve_names
from ..reproduce import reproduce as run_reproduce
from ..run import check_seed
from .common import (
    WHOLE,
    backend_option,
    check_writable,
    data_dir_option,
    echo_json,
    json_option,
    offline_option,
)
from .progress import StepProgress


class _Progress:
    """One :class:`StepProgress` per run, labelled with the run's place in the whole reproduction."""

    def __init__(self) -> None:
        self.current: StepProgress | None = None
        self.label = ""

    def start(self, recipe, seed: int, index: int, n_runs: int) -> None:
        self.close()
        self.label = f"[{index + 1}/{n_runs}] {recipe.name} seed {seed}"
        self.current = StepProgress(self.label)

    def update(self, done: int, total: int, loss: float) -> None:
        if self.current is not None:
            self.current(done, total, loss)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every recipe, in order.")
@backend_option
@click.option(
    "--seed", type=WHOLE, default=None, help="Seed for initial weights and batch order [default: 0]."
)
@click.option(
    "--seeds",
    default=None,
    help=f"Several seeds, e.g. 0,1,2: mean ± std per recipe. Recipes with more than {CHEAP_STEPS:,} steps "
    "run the first seed only (see --all-seeds).",
)
@click.option("--all-seeds", is_flag=True, help="Run every seed of --seeds on the expensive recipes too.")
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the table and one paragraph per recipe as Markdown (docs/reproductions.md).",
)
@data_dir_option
@offline_option
@json_option("a JSON list, one object per recipe")
def reproduce(
    names, all_, backend, seed, seeds, all_seeds, markdown_path, data_dir, offline, as_json
) -> None:
    """Reproduce tutorials: NAME... (or --all) beside each article's published test accuracy."""

    todo = resolve_names(names, all_)
    if seed is not None and seeds is not None:
        raise SpecError("give --seed or --seeds, not both")
    seed_list = parse_seeds(seeds) if seeds is not None else [check_seed(0 if seed is None else seed)]
    check_writable(markdown_path, "Markdown report")
    data = load_mnist(data_dir, offline=offline or None)
    progress = _Progress()
    try:
        rows = run_reproduce(
            todo,
            backend,
            seed_list,
            data,
            expensive_all_seeds=all_seeds,
            on_start=progress.start,
            on_progress=progress.update,
        )
    except TrainingInterrupted as e:
        raise e.with_advice(
            f"in {progress.label}; reproduce keeps no checkpoints and reports nothing unfinished: "
            "run it again"
        ) from None
    finally:
        progress.close()
    if markdown_path:
        command = " ".join(sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else ""
        text = render_markdown(rows, command=command.removeprefix("reproduce "))
        with atomic_write(markdown_path) as f:
            f.write(text.encode("utf-8"))
    if as_json:
        echo_json([r.to_dict() for r in rows])
        return
    click.echo(render_table(rows))
    if markdown_path:
        click.echo(f"\nwrote {markdown_path}")


reproduce.help = (reproduce.help or "").rstrip() + "\n\nRecipes: " + ", ".join(RECIPES) + "."

COMMANDS = [reproduce]
