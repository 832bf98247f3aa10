"""``pyflux-mnist bench``: end to end on real MNIST with tiny step counts (no timing assertions), the JSON
shape, unavailable backends, bad options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pyflux_mnist.bench import flops_per_step, render_markdown, render_text
from pyflux_mnist.bench_bound import bytes_per_step, products
from pyflux_mnist.bench_sweep import fit_exponent
from pyflux_mnist.cli import cli
from pyflux_mnist.recipes import get_recipe

ROW_NUMBERS = ("setup_seconds", "ms_per_step", "final_loss", "test_accuracy", "peak_rss_mb")


def _bench(args, monkeypatch, mnist_dir):
    monkeypatch.setenv("PYFLUX_MNIST_JULIA", "0")  # Flux is an "unavailable" row, never started
    result = CliRunner().invoke(cli, ["bench", "--data-dir", str(mnist_dir), *args])
    return result


def _check_schema(out: dict, backends: list[str]) -> None:
    assert {"machine", "roofline", "results", "settings", "date"} <= set(out)
    for key in ("cpu", "logical_cpus", "threads", "numpy", "blas"):
        assert key in out["machine"]
    assert any(lib["internal_api"] for lib in out["machine"]["blas"])
    for key in ("gflop_per_step", "sgemm_gflops", "ms_per_step"):
        assert isinstance(out["roofline"][key], float) and out["roofline"][key] > 0
    bound = out["bound"]
    for key in ("products_ms", "products_gflops", "bandwidth_gbs", "memory_ms", "ms_per_step"):
        assert isinstance(bound[key], float) and bound[key] > 0, key
    assert bound["ms_per_step"] == max(bound["products_ms"], bound["memory_ms"])
    assert bound["wall"] in ("products", "memory")
    assert [p["product"] for p in bound["products"]] == ["W1·X", "X·dZ1ᵀ", "W2·X", "X·dZ2ᵀ", "W2ᵀ·dZ2"]
    assert [r["backend"] for r in out["results"]] == backends
    for row in out["results"]:
        assert row["status"] in ("ok", "unavailable", "error")
        if row["status"] == "ok":
            assert row["reason"] is None
            for key in ROW_NUMBERS:
                assert isinstance(row[key], float) and row[key] > 0, key
            assert 0 <= row["test_accuracy"] <= 1
            assert row["ratio_to_roofline"] > 0 and row["ratio_to_bound"] > 0


@pytest.mark.torch
def test_bench_numpy_torch_end_to_end_json(mnist_dir, monkeypatch, tmp_path) -> None:
    pytest.importorskip("torch")
    out_path, md_path = tmp_path / "r.json", tmp_path / "r.md"
    args = ["--backends", "numpy,torch,flux", "--steps", "2", "--repeat", "2", "--threads", "1", "--json"]
    result = _bench([*args, "--output", str(out_path), "--markdown", str(md_path)], monkeypatch, mnist_dir)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    _check_schema(out, ["numpy", "torch", "flux"])
    assert json.loads(out_path.read_text()) == out
    rows = {r["backend"]: r for r in out["results"]}
    assert rows["flux"]["status"] == "unavailable" and "PYFLUX_MNIST_JULIA=0" in rows["flux"]["reason"]
    numpy_row, torch_row = rows["numpy"], rows["torch"]
    assert numpy_row["ratio_to_numpy"] == 1.0
    # Same weights, same batches: the runs are the same run, up to float32 rounding.
    assert numpy_row["init_sha256"] == torch_row["init_sha256"]
    assert numpy_row["first_loss"] == pytest.approx(torch_row["first_loss"], rel=1e-5)
    assert numpy_row["final_loss"] == pytest.approx(torch_row["final_loss"], rel=1e-4)
    assert out["settings"]["steps"] == 2 and len(numpy_row["ms_per_step_repeats"]) == 2
    assert torch_row["threads"]["intra-op"] == 1
    assert all(lib["num_threads"] == 1 for lib in numpy_row["threads"]["blas"])
    md = md_path.read_text()
    assert "| numpy | ok |" in md and "| flux | unavailable" in md and "roofline" in md


def test_bench_minibatch_recipe_table(mnist_dir, monkeypatch) -> None:
    result = _bench(
        ["--backends", "numpy", "--recipe", "keras", "--steps", "3", "--repeat", "1"], monkeypatch, mnist_dir
    )
    assert result.exit_code == 0, result.output
    assert "numpy" in result.stdout and "s/epoch" in result.stdout and "roofline" in result.stdout
    assert "memory" in result.stdout and "× bound" in result.stdout


def test_unavailable_backend_only_is_a_row_and_exit_zero(mnist_dir, monkeypatch) -> None:
    result = _bench(["--backends", "flux", "--steps", "1", "--repeat", "1", "--json"], monkeypatch, mnist_dir)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    _check_schema(out, ["flux"])
    assert out["results"][0]["status"] == "unavailable"
    assert out["results"][0]["reason"]


def test_a_backend_that_cannot_express_the_recipe_is_an_unavailable_row(mnist_dir, monkeypatch) -> None:
    pytest.importorskip("torch")
    args = ["--backends", "numpy,torch", "--recipe", "rashid", "--steps", "5", "--repeat", "1", "--json"]
    result = _bench(args, monkeypatch, mnist_dir)
    assert result.exit_code == 0, result.output
    numpy_row, torch_row = json.loads(result.stdout)["results"]
    assert numpy_row["status"] == "ok"
    assert torch_row["status"] == "unavailable" and "only the NumPy backend" in torch_row["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backends", "numpy,nope"], "unknown backend 'nope'"),
        (["--backends", ","], "at least one backend"),
        (["--backends", "numpy,numpy"], "listed twice"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--repeat", "0"], "--repeat must be a positive integer"),
        (["--threads", "0"], "--threads must be a positive integer"),
        (["--recipe", "nope"], "unknown recipe 'nope'"),
        (["--seed", "-1"], "seed must be an integer between 0 and 2**63 - 1, got -1"),  # main: unchecked
        (["--seed", "x"], "seed must be a whole number, got 'x'"),
        (["--output", "/nonexistent/dir/r.json"], "does not exist"),
    ],
)
def test_bad_options_give_one_line_error(mnist_dir, monkeypatch, args, message) -> None:
    result = _bench(args, monkeypatch, mnist_dir)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.strip().startswith("Error:") and "Traceback" not in result.output


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch) -> None:
    result = _bench(["--backends", "numpy", "--offline"], monkeypatch, tmp_path)
    assert result.exit_code == 1 and result.output.startswith("Error:")


_SAVED = {
    "date": "2026-01-01T00:00:00+00:00",
    "machine": {
        "cpu": "CPU",
        "usable_cpus": 2,
        "logical_cpus": 2,
        "threads": 2,
        "numpy": "2",
        "python": "3",
        "blas": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3", "architecture": "X"}],
    },
    "settings": {
        "recipe": "flux-tutorial",
        "samples_per_step": 60000,
        "repeat": 1,
        "steps": 1,
        "seed": 0,
        "batch_size": 0,
        "steps_per_epoch": None,
    },
    "roofline": {"gflop_per_step": 6.1, "sgemm_gflops": 200.0, "ms_per_step": 30.5},
    "results": [{"backend": "flux", "status": "unavailable", "reason": "no Julia"}],
}


def test_render_from_saved_json(tmp_path) -> None:
    saved = _SAVED
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved))
    result = CliRunner().invoke(
        cli, ["bench", "--from-json", str(path), "--markdown", str(tmp_path / "t.md")]
    )
    assert result.exit_code == 0, result.output
    assert "unavailable" in result.stdout
    assert (tmp_path / "t.md").read_text() == render_markdown(saved)


def test_flops_per_step_counts_the_matrix_products() -> None:
    r = get_recipe("flux-tutorial")
    n = 60000
    assert flops_per_step(r, n) == 2 * 2 * n * 784 * 32 + 3 * 2 * n * 32 * 10


def test_markdown_fills_the_marked_section_of_an_existing_file(tmp_path) -> None:
    from pyflux_mnist.bench import write_markdown

    saved = json.loads(json.dumps(_SAVED))
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- bench:flux-tutorial -->\nold table\n<!-- /bench:flux-tutorial -->\nafter\n")
    write_markdown(saved, str(doc))
    text = doc.read_text()
    assert text.startswith("intro\n<!-- bench:flux-tutorial -->\n") and text.endswith(
        "<!-- /bench:flux-tutorial -->\nafter\n"
    )
    assert "old table" not in text and render_markdown(saved) in text


def test_table_keeps_long_notes_under_it_and_counts_in_the_singular(tmp_path) -> None:
    """The roofline's description and a backend's reason are notes under the table, not cells that widen a
    column (the table was ~200 characters wide); one sample is '1 sample/step'."""
    saved = json.loads(json.dumps(_SAVED))
    saved["settings"] |= {"samples_per_step": 1, "steps": 1}
    saved["roofline"] |= {"sgemm_gflops_rounds": [190.0, 200.0], "sgemm_rate_used": "best of the run"}
    saved["results"][0]["reason"] = "the Flux backend needs Julia: " + "x" * 80
    text = render_text(saved)
    table = text.split("\n\n")[1]
    assert max(len(line) for line in table.splitlines()) < 150, table
    assert "1 sample/step" in text and "1 samples/step" not in text
    assert "GFLOP/step at 200 GFLOP/s" in text.split("\n\n")[2] and "x" * 80 in text.split("\n\n")[2]
    assert "1 sample/step" in render_markdown(saved)


def test_bound_counts_products_and_bytes() -> None:
    r = get_recipe("keras")  # 784-512-10, RMSprop: one slot
    assert [(a, b) for _, a, b in products(r, 128)] == [
        ((512, 784), (784, 128)),
        ((784, 128), (128, 512)),
        ((10, 512), (512, 128)),
        ((512, 128), (128, 10)),
        ((512, 10), (10, 128)),
    ]
    n_params = 784 * 512 + 512 + 512 * 10 + 10
    assert bytes_per_step(r, 128) == 4 * (128 * (784 + 10) + n_params * (2 + 3 + 2))


def test_fit_exponent_is_the_log_log_slope() -> None:
    k, local = fit_exponent([1000, 2000, 4000, 8000], [1.0, 2.0, 4.0, 8.0])
    assert k == pytest.approx(1.0) and local == pytest.approx([1.0, 1.0, 1.0])
    k, local = fit_exponent([32, 64, 128], [3.0, 3.0, None])  # a missing point: no slope to or from it
    assert k == pytest.approx(0.0) and local[1] is None


def test_sweep_samples_writes_table_json_chart_and_markdown_section(mnist_dir, monkeypatch, tmp_path) -> None:
    from PIL import Image

    out_path, doc = tmp_path / "sweep.json", tmp_path / "doc.md"
    doc.write_text(
        "<!-- bench:flux-tutorial:sweep-samples -->\nold\n<!-- /bench:flux-tutorial:sweep-samples -->\n"
    )
    args = ["--backends", "numpy,flux", "--sweep", "samples", "--points", "600,300", "--steps", "2"]
    args += ["--repeat", "2", "--threads", "1", "--output", str(out_path), "--markdown", str(doc)]
    result = _bench(args, monkeypatch, mnist_dir)
    assert result.exit_code == 0, result.output
    out = json.loads(out_path.read_text())
    sweep = out["sweep"]
    assert sweep["axis"] == "samples" and sweep["points"] == [300, 600]
    assert out["settings"]["samples_per_step"] == [300, 600]
    numpy_line, flux_line = sweep["backends"]
    assert flux_line["status"] == "unavailable" and flux_line["ms_per_step"] == [None, None]
    assert all(v > 0 for v in numpy_line["ms_per_step"]) and isinstance(numpy_line["exponent"], float)
    assert len(numpy_line["local_exponents"]) == 1 and all(v > 0 for v in numpy_line["peak_rss_mb"])
    assert all(v > 0 for v in sweep["roofline_ms"])
    with Image.open(tmp_path / "sweep.png") as chart:
        assert chart.size[0] >= 800
    assert "exponent" in result.stdout and "peak RSS MB" in result.stdout
    text = doc.read_text()
    assert "old" not in text and "| exponent |" in text


def test_sweep_hidden_changes_the_width(mnist_dir, monkeypatch) -> None:
    args = ["--backends", "numpy", "--recipe", "keras", "--sweep", "hidden", "--points", "16,48"]
    result = _bench(
        [*args, "--steps", "3", "--repeat", "1", "--threads", "1", "--json"], monkeypatch, mnist_dir
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["sweep"]["points"] == [16, 48] and out["settings"]["samples_per_step"] == [128, 128]
    g16, g48 = out["sweep"]["gflop_per_step"]
    assert g48 == pytest.approx(3 * g16)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--points", "1,2"], "--points needs --sweep"),
        (["--sweep", "samples", "--points", "a,b"], "comma-separated positive integers"),
        (["--sweep", "samples", "--points", "1000"], "at least two"),
        (["--sweep", "samples", "--points", "1000,70000"], "has 60000 training samples"),
        (["--sweep", "hidden", "--points", "32,99999"], "widths up to 4096"),
        (["--sweep", "depth"], "Invalid value for '--sweep'"),
    ],
)
def test_bad_sweep_options_give_one_line_error(mnist_dir, monkeypatch, args, message) -> None:
    result = _bench(["--backends", "numpy", *args], monkeypatch, mnist_dir)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
