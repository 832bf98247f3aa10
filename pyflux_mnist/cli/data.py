"""``pyflux-mnist data download|info``: fill the cache, and show where MNIST is and whether it is intact."""

from __future__ import annotations

import click

from ..errors import DataError
from ..mnist import data_info, download_mnist
from .common import SuggestingGroup, data_dir_option, echo_json, json_option, progress, without_name


@click.group("data", cls=SuggestingGroup)
def data() -> None:
    """Download MNIST, or check the files in use."""


@data.command("download")
@data_dir_option
def download_command(data_dir: str | None) -> None:
    """Download and verify the four MNIST files (into the cache unless --data-dir); print the directory."""
    directory = download_mnist(data_dir, progress=True)
    progress(f"MNIST is ready in {directory}")
    click.echo(str(directory))


@data.command("info")
@data_dir_option
@json_option("the report as JSON")
def info_command(data_dir: str | None, as_json: bool) -> None:
    """Show where each MNIST file is, its size, checksum status and label counts (never downloads).

    Exits 1 when a file is missing or does not match MNIST's checksum.
    """
    report = data_info(data_dir)
    if as_json:
        echo_json(report)
    else:
        click.echo(f"directory: {report['directory']} (from {report['from']})")
        for name, f in report["files"].items():
            if not f["present"]:
                click.echo(f"  {name}: missing")
                continue
            status = "ok" if f["checksum_ok"] else f.get("error") or "checksum MISMATCH"
            parts = [f"{f['bytes_on_disk']} bytes"]
            if f.get("shape"):
                parts.append("x".join(map(str, f["shape"])))
            parts.append(without_name(status, f["path"]))
            click.echo(f"  {f['path']}: {', '.join(parts)}")
            if "label_counts" in f:
                click.echo(f"    label counts 0..9: {' '.join(map(str, f['label_counts']))}")
    if not report["verified"]:
        bad = [n for n, f in report["files"].items() if not f.get("checksum_ok")]
        where = report["directory"]
        raise DataError(
            f"{where}: {', '.join(bad)} missing or not MNIST"
            + ("; run `pyflux-mnist data download`" if report["would_download"] else "")
        )


COMMANDS = [data]
