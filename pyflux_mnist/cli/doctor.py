"""``pyflux-mnist doctor``: the data, every backend, and parity with NumPy, as a table or ``--json``."""

from __future__ import annotations

import click

from ..backends import backend_names, check_name
from ..doctor import LOSS_RTOL, N_TEST, N_TRAIN, STEPS, doctor
from ..errors import SpecError
from ..recipes import FLUX_TUTORIAL
from .common import ERROR_EXIT, data_dir_option, echo_json, json_option


def _registered(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Each ``--backend`` a registered name; a near miss (``pytorch``) gets the registry's "did you mean"."""
    try:
        return tuple(check_name(v) for v in values)
    except SpecError as e:
        raise click.BadParameter(str(e)) from None


@click.command(
    "doctor",
    help="Check this installation: MNIST files, each backend (versions, threads) and parity with NumPy.\n\n"
    f"Parity: each available backend trains the {FLUX_TUTORIAL.name} network for {STEPS} full-batch Adam "
    f"steps on the first {N_TRAIN} training digits from NumPy's initial weights; the loss curves must agree "
    f"to {LOSS_RTOL:g} (max relative difference) and the digits predicted for the first {N_TEST} test "
    "images must be NumPy's (bar near-ties). Exits 1, with one line per failed check, if anything "
    "available fails.",
)
@data_dir_option
@click.option(
    "--backend",
    "backends",
    multiple=True,
    callback=_registered,
    help=f"Check only this backend (repeatable; one that cannot run here fails). One of: "
    f"{', '.join(backend_names())}. Default: every registered backend (one that cannot run here is skipped).",
)
@json_option("the report as one JSON object")
@click.pass_context
def doctor_command(
    ctx: click.Context, data_dir: str | None, backends: tuple[str, ...], as_json: bool
) -> None:
    """See the help text above (built from the constants the check uses)."""
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
