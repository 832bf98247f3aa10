"""``bench``: time the backends against each other and against this machine's sgemm roofline."""

from __future__ import annotations

import json

import click

from .. import bench as b
from .. import bench_sweep as bs
from ..backends import backend_names
from ..bench import EPOCH_STEPS_MAX, FULL_BATCH_STEPS
from ..errors import PyfluxError
from ..userpaths import UserPathError, escape, open_regular
from .common import (
    check_writable,
    data_dir_option,
    echo_json,
    json_option,
    offline_option,
    progress,
    recipe_option,
    seed_option,
)

#: A saved benchmark result is a few kB; refuse to parse more than this.
MAX_JSON_BYTES = 16 << 20


@click.command()
@click.option(
    "--backends",
    default=",".join(backend_names()),
    show_default=True,
    help=f"Comma-separated, from: {', '.join(backend_names())}. One missing here is an 'unavailable' row.",
)
@recipe_option
@click.option(
    "--steps",
    type=int,
    default=None,
    help=f"Timed steps per repeat [{FULL_BATCH_STEPS} for a full-batch recipe, else one epoch, at most "
    f"{EPOCH_STEPS_MAX} steps].",
)
@click.option("--repeat", type=int, default=None, help="Interleaved timed repeats [5; 3 for a sweep].")
@click.option("--threads", type=int, default=None, help="BLAS/torch/Julia threads [the usable CPUs].")
@seed_option
@data_dir_option
@offline_option
@json_option("the JSON result instead of the table")
@click.option(
    "--output", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result here."
)
@click.option(
    "--markdown", type=click.Path(dir_okay=False), default=None, help="Also write the table as Markdown."
)
@click.option(
    "--from-json",
    "from_json",
    type=click.Path(dir_okay=False),
    default=None,
    help="Run nothing: render a saved --output file (with --markdown, or as the table).",
)
@click.option(
    "--sweep",
    type=click.Choice(["samples", "hidden"]),
    default=None,
    help="Time a step against the samples per step (full batch, 1000-60000) or the hidden width (32-1024); "
    "with --output, a log-log chart is written beside the JSON (.png).",
)
@click.option(
    "--points", default=None, help="The sweep's points, comma-separated [1000,...,60000 or 32,...,1024]."
)
def bench(
    backends, recipe, steps, repeat, threads, seed, data_dir, offline, as_json, output, markdown, from_json,
    sweep, points,
) -> None:  # fmt: skip
    """Benchmark the backends on one recipe: same data, weights, batches and BLAS threads.

    Each backend runs in its own process; the timed repeats are interleaved across backends so that
    background load hits all of them alike. Progress goes to stderr, the table (or --json) to stdout.
    """

    check_writable(output, "JSON result")
    check_writable(markdown, "Markdown table")
    if points and not sweep:
        raise PyfluxError("--points needs --sweep samples or --sweep hidden")
    if from_json:
        try:
            with open_regular(from_json, "benchmark result (JSON)") as f:
                result = json.loads(f.read(MAX_JSON_BYTES + 1).decode("utf-8"))
        except UserPathError:
            raise
        except ValueError:  # not JSON at all (notes.txt), or not UTF-8: what it is not, not where it broke
            raise PyfluxError(
                escape(f"{from_json} is not a bench result ({_WRITTEN_BY}): not JSON")
            ) from None
        except OSError as e:
            raise PyfluxError(escape(f"cannot read benchmark results from {from_json}: {e}")) from None
        rows = result.get("results") if isinstance(result, dict) else None
        sweep_of = result.get("sweep") if isinstance(result, dict) else None
        if not (isinstance(result, dict) and isinstance(result.get("settings"), dict)
                and (isinstance(rows, list) or isinstance(sweep_of, dict))):  # fmt: skip
            raise PyfluxError(
                escape(f"{from_json} is not a bench result ({_WRITTEN_BY}): no settings and results or sweep")
            )
    else:
        names = [n.strip() for n in backends.split(",") if n.strip()]
        verbose = bool((click.get_current_context().find_root().obj or {}).get("verbose"))
        if sweep:
            result = bs.run_sweep(
                names, recipe, sweep, bs.parse_points(points, sweep), steps,
                bs.DEFAULT_SWEEP_REPEAT if repeat is None else repeat, threads, seed, data_dir,
                offline or None, progress=progress, verbose=verbose,
            )  # fmt: skip
        else:
            result = b.run_bench(
                names, recipe, steps, b.DEFAULT_REPEAT if repeat is None else repeat, threads, seed, data_dir,
                offline or None, progress=progress, verbose=verbose,
            )  # fmt: skip
    is_sweep = "sweep" in result
    if output:
        b.write_json(result, output)
        if is_sweep:
            bs.sweep_chart(result, bs.chart_path(output))
    if markdown:
        b.write_markdown(result, markdown, bs.render_markdown if is_sweep else None)
    if as_json:
        echo_json(result)
    else:
        click.echo((bs.render_text if is_sweep else b.render_text)(result), nl=False)
    failed = [] if from_json else b.failed_rows(result)
    if failed:
        raise PyfluxError(f"{len(failed)} backend(s) failed: {'; '.join(failed)}")


_WRITTEN_BY = "the JSON that bench --json or -o writes"

COMMANDS = [bench]
