"""``pyflux-mnist doctor``: the data, every backend, and parity with NumPy, as a table or ``--json``."""

from __future__ import annotations

import click

from ..backends import backend_names
from ..doctor import doctor
from .common import ERROR_EXIT, data_dir_option, echo_json, json_option


@click.command("doctor")
@data_dir_option
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(backend_names()),
    help="Check only this backend (repeatable). Default: every registered backend.",
)
@json_option("the report as one JSON object")
@click.pass_context
def doctor_command(
    ctx: click.Context, data_dir: str | None, backends: tuple[str, ...], as_json: bool
) -> None:
    """Check this installation: MNIST files, each backend (versions, threads) and parity with NumPy.

    Parity: each available backend trains the flux-tutorial network for 10 full-batch Adam steps on the
    first 1000 training digits from NumPy's initial weights; the loss curves must agree to 1e-4 (max
    relative difference) and the digits predicted for the first 1000 test images must be NumPy's (bar
    near-ties). Exits 1, with one line per failed check, if anything available fails.
    """
    report = doctor(data_dir, backends or None)
    if as_json:
        echo_json(report.as_dict())
    else:
        width = max(len(r.item) for r in report.rows)
        click.echo(f"{'check':<8} {'item':<{width}} {'status':<6} detail")
        for r in report.rows:
            click.echo(f"{r.check:<8} {r.item:<{width}} {r.status:<6} {r.detail}")
    if not report.ok:
        for line in report.failures():
            click.echo(f"Error: {line}", err=True)
        ctx.exit(ERROR_EXIT)


COMMANDS = [doctor_command]
