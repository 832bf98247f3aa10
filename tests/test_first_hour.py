"""The rough edges a newcomer hit in the first hour (issue 12): each test runs the command that showed one.

Messages that mislead or leak, outputs checked before the work, progress off a terminal, the overrides
named with the recipe, JSON that honours --top, and the Python API's inputs and names.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runs import invoker
from click.testing import CliRunner

import pyflux_mnist as pm
from pyflux_mnist.cli import cli
from pyflux_mnist.cli.progress import StepProgress
from pyflux_mnist.errors import PyfluxError, TrainingInterrupted
from pyflux_mnist.recipes import recipe_label

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(mnist_dir):
    return invoker(mnist_dir)


@pytest.fixture
def no_data(monkeypatch):
    """Loading MNIST fails the test: for checks that must come before any work."""
    import pyflux_mnist.mnist as mnist_module

    def refuse(*a, **k):
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(mnist_module, "load_mnist", refuse)


@pytest.fixture
def without(monkeypatch):
    """``without("torch")``: this process as if the package were not installed (found by no finder,
    refused by ``import``), as on a machine without that extra."""

    def hide(name: str) -> None:
        real = importlib.util.find_spec

        def find_spec(fullname: str, *args, **kwargs):
            if fullname == name or fullname.startswith(name + "."):
                return None
            return real(fullname, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        monkeypatch.setitem(sys.modules, name, None)

    return hide


def _one_error(result, text: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], result.output
    return lines[0]


@pytest.fixture(scope="module")
def model_file(small_model, tmp_path_factory) -> Path:
    return small_model.save(tmp_path_factory.mktemp("model") / "m.npz")


# --- 1. a file that is not a model --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"my notes about the run\n", "a text file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "a PNG image"),
        (b"\x93NUMPY\x01\x00" + bytes(40), "a NumPy .npy array"),
        (b"", "an empty file"),
    ],
)
def test_a_file_that_is_no_model_says_so_and_never_suggests_unpickling(tmp_path, content, kind) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    line = _one_error(
        CliRunner().invoke(cli, ["evaluate", str(path)]), f"is not a pyflux-mnist model file ({kind})"
    )
    assert "train --save" in line and "pickle" not in line.lower()


# --- 3. what an interruption says ---------------------------------------------------------------------


def test_interrupted_advice_belongs_to_the_command() -> None:
    e = TrainingInterrupted("interrupted after step 3 of 200; nothing saved", 3, 200)
    assert "--checkpoint" not in str(e)  # the library says what happened; commands add what is true for them
    advised = e.with_advice("(the tutorial always starts from the beginning)")
    assert str(advised).endswith("(the tutorial always starts from the beginning)")
    assert (advised.steps_done, advised.total_steps, advised.exit_code) == (3, 200, 130)


# --- 4. did you mean ----------------------------------------------------------------------------------


def test_unknown_backend_suggests_the_close_name_and_lists_every_backend(no_data, monkeypatch) -> None:
    monkeypatch.setenv("PYFLUX_MNIST_JULIA", "0")
    line = _one_error(CliRunner().invoke(cli, ["train", "--backend", "pytorch"]), "unknown backend 'pytorch'")
    assert "(did you mean 'torch'?)" in line
    from pyflux_mnist.backends import backend_status

    for name, reason in backend_status().items():  # every backend, and why it cannot run here
        assert name in line and (reason is None or f"{name} (unavailable: {reason})" in line)
    assert "PYFLUX_MNIST_JULIA=0" in line


def test_unknown_recipe_and_command_suggest_the_close_name(no_data) -> None:
    line = _one_error(CliRunner().invoke(cli, ["train", "--recipe", "tensorflow"]), "unknown recipe")
    assert "(did you mean 'tensorflow-tutorial'?)" in line and "keras" in line
    result = CliRunner().invoke(cli, ["tran"])
    assert result.exit_code == 2 and "no such command 'tran' (did you mean 'train'?)" in result.output
    result = CliRunner().invoke(cli, ["show", "sample"])
    assert result.exit_code == 2 and "(did you mean 'samples'?)" in result.output
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2 and "commands: backquery, bench" in result.output


# --- 6. messages that name the options and do not stutter ---------------------------------------------


def test_steps_and_epochs_together_name_the_options(no_data) -> None:
    _one_error(CliRunner().invoke(cli, ["train", "--steps", "10", "--epochs", "1"]), "(--steps or --epochs)")


def test_predict_errors_name_the_file_once(tmp_path, model_file) -> None:
    from PIL import Image

    blank, text = tmp_path / "blank.png", tmp_path / "notes.txt"
    Image.new("L", (40, 40), 255).save(blank)
    text.write_text("not a picture")
    result = CliRunner().invoke(cli, ["predict", str(model_file), str(blank), str(text)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{blank}: error: no ink found (the image is blank)",
        f"{text}: error: not an image in a format read here (PNG, JPEG, GIF, BMP, TIFF, WEBP, PPM)",
    ]


def test_data_info_on_a_corrupt_file_has_no_empty_field(mnist_dir, tmp_path) -> None:
    for f in Path(mnist_dir).iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    bad = next(tmp_path.glob("t10k-labels-idx1-ubyte*"))
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(cli, ["data", "info", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    line = next(line for line in result.stdout.splitlines() if str(bad) in line)
    assert line == f"  {bad}: 7 bytes, not an IDX file, bad magic {b'garb'.hex()}"


def test_info_never_prints_none(run) -> None:
    result = run("info", data=False)
    assert result.exit_code == 0 and "None" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("julia")]) <= 1


# --- 7. with and without each optional extra ----------------------------------------------------------


def test_a_recipe_torch_cannot_run_is_said_first_even_without_torch(no_data, without) -> None:
    without("torch")
    from pyflux_mnist.backends import backend_status

    assert "not installed" in (backend_status()["torch"] or "")  # torch really is missing for this test
    line = _one_error(
        CliRunner().invoke(cli, ["train", "--backend", "torch", "--recipe", "rashid"]),
        "only the NumPy backend implements it",
    )
    assert "not installed" not in line  # installing torch would not help: say so first


# --- 8, 9. outputs checked before the work, in the format their names promise -------------------------


def test_charts_without_matplotlib_fail_before_any_work(model_file, no_data, without, tmp_path) -> None:
    without("matplotlib")
    result = CliRunner().invoke(cli, ["train", "--plot", str(tmp_path / "loss.png")])
    _one_error(result, "--plot " + str(tmp_path / "loss.png") + ": charts need matplotlib")
    result = CliRunner().invoke(cli, ["evaluate", str(model_file), "--confusion", str(tmp_path / "c.png")])
    _one_error(result, "charts need matplotlib, which is not installed: pip install 'pyflux-mnist[plots]'")


def test_picture_suffixes_we_cannot_write_are_refused_up_front(model_file, no_data, tmp_path) -> None:
    _one_error(CliRunner().invoke(cli, ["train", "--plot", str(tmp_path / "l.gif")]), "not .gif")
    result = CliRunner().invoke(cli, ["evaluate", str(model_file), "--errors", str(tmp_path / "e.gif")])
    _one_error(result, "a digit grid can be written as .jpeg, .jpg, .pdf, .png, .svg, not .gif")
    result = CliRunner().invoke(cli, ["show", "samples", "-o", str(tmp_path / "s.tif")])
    _one_error(result, "a digit grid can be written as .jpeg, .jpg, .pdf, .png, .svg, not .tif")


def test_plot_writes_the_format_its_suffix_names(run, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    magic = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".pdf": b"%PDF", ".svg": b"<?xml"}
    result = run("train", "--hidden", "4", "--steps", "3", "--plot", str(tmp_path / "loss.svg"))
    assert result.exit_code == 0, result.output
    from pyflux_mnist.pictures import loss_curve_png

    for suffix, head in magic.items():
        path = tmp_path / f"loss{suffix}"
        loss_curve_png([2.3, 1.0, 0.5], path)
        assert path.read_bytes().startswith(head), suffix
    assert b"<svg" in (tmp_path / "loss.svg").read_bytes()


# --- 10. overrides travel with the recipe name --------------------------------------------------------


def test_overrides_are_recorded_and_shown_wherever_the_recipe_is_named(run, tmp_path) -> None:
    saved = tmp_path / "m.npz"
    args = ["--hidden", "16", "--steps", "3", "--lr", "0.01", "--batch-size", "128", "--save", str(saved)]
    result = run("train", *args)
    assert result.exit_code == 0, result.output
    label = "flux-tutorial (hidden 16, steps 3, batch size 128, lr 0.01)"
    assert f"recipe         {label}" in result.stdout
    model = pm.load_model(saved)
    assert model.meta["overrides"] == {"hidden": [16], "steps": 3, "batch_size": 128, "lr": 0.01}
    assert model.recipe.notes.startswith("Changed here: hidden 16, steps 3, batch size 128, lr 0.01.")
    assert label in run("evaluate", str(saved)).stdout
    assert json.loads(run("evaluate", str(saved), "--json").stdout)["overrides"] == model.meta["overrides"]
    info = run("info", str(saved), data=False)
    assert info.exit_code == 0 and label in info.stdout
    # A file written before overrides were recorded still loads, and still shows them (from its recipe).
    old_meta = {k: v for k, v in model.meta.items() if k not in ("overrides", "format", "format_version")}
    old = pm.Model(model.recipe, model.params, old_meta).save(tmp_path / "old.npz")
    assert label in run("evaluate", str(old)).stdout
    # An unchanged recipe is just its name.
    assert recipe_label(pm.get_recipe("keras")) == "keras"


# --- 13. progress that fits a log and a terminal ------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_is_throttled_to_one_line_per_interval_plus_the_last() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = StepProgress("keras [numpy]", stream=out, interval=10.0, clock=lambda: now[0])
    for step in range(1, 471):  # one keras epoch, 0.1 s a step after a 5 s warm-up
        now[0] = 5.0 + 0.1 * step
        progress(step, 470, 1 / step)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("keras [numpy]: step 1/470") and "warm-up" in lines[0]
    assert lines[-1].startswith("keras [numpy]: step 470/470")
    assert len(lines) == 2 + int(47 / 10)  # the first, one per 10 s, the last


def test_progress_in_a_terminal_counts_the_warm_up_apart() -> None:
    out = _Terminal()
    progress = StepProgress("flux-tutorial [numpy]", stream=out)
    for step in range(1, 201):
        progress(step, 200, 1 / step)
    progress.close()
    text = out.getvalue()
    first_line, bar = text.split("\n", 1)
    assert first_line.startswith("flux-tutorial [numpy]: set-up and first step (the warm-up)...")
    assert "0/0" not in text and "step 200/200" in bar and "100%" in bar


def test_train_off_a_terminal_writes_a_few_lines_not_one_per_step(run) -> None:
    result = run("train", "--hidden", "8", "--steps", "150", "--batch-size", "100")
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("flux-tutorial [numpy]")]
    seconds = float(re.search(r"in ([\d.]+) s", result.stdout).group(1))
    assert 2 <= len(progress) <= 3 + seconds / 10, result.stderr
    assert progress[-1].startswith("flux-tutorial [numpy]: step 150/150")


# --- 14. --top in JSON --------------------------------------------------------------------------------


def test_predict_json_honours_top(tmp_path, model_file, mnist) -> None:
    from PIL import Image

    digit = tmp_path / "seven.png"
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(digit)
    for top in (1, 10):
        result = CliRunner().invoke(
            cli, ["predict", str(model_file), str(digit), "--json", "--top", str(top)]
        )
        assert result.exit_code == 0, result.output
        (out,) = json.loads(result.stdout)
        probs = out["probabilities"]
        assert len(probs) == top and next(iter(probs)) == str(out["label"])
        assert list(probs.values()) == sorted(probs.values(), reverse=True)


# --- 15, 16. the Python API ---------------------------------------------------------------------------


def test_model_accepts_uint8_and_unit_floats_and_refuses_the_rest(small_model, mnist) -> None:
    images = mnist.test_images[:200]
    labels = small_model.predict(images)
    np.testing.assert_array_equal(small_model.predict(images.astype(np.float32) / 255), labels)
    np.testing.assert_array_equal(small_model.predict(images.astype(np.float64) / 255), labels)
    np.testing.assert_array_equal(small_model.predict(images.astype(np.int64)), labels)
    np.testing.assert_allclose(
        small_model.probabilities(images / 255), small_model.probabilities(images), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(PyfluxError, match=r"float images must hold values in \[0, 1\].*divide by 255"):
        small_model.predict(images.astype(np.float32))
    with pytest.raises(PyfluxError, match="float images must hold values in"):
        small_model.predict(np.full((2, 28, 28), np.nan, np.float32))
    with pytest.raises(PyfluxError, match=r"integer images must hold 0\.\.255"):
        small_model.predict(images.astype(np.int64) - 1)
    with pytest.raises(PyfluxError, match="got dtype bool"):
        small_model.predict(images > 0)


def test_rashid_scaling_of_unit_floats_matches_uint8(rashid_model, mnist) -> None:
    images = mnist.test_images[:50]
    np.testing.assert_allclose(
        rashid_model.probabilities(images / 255), rashid_model.probabilities(images), rtol=1e-5, atol=1e-6
    )


def test_repr_is_one_short_line(small_model, mnist) -> None:
    text = repr(small_model)
    assert "\n" not in text and len(text) < 160
    assert text.startswith("Model(flux-tutorial (steps 40), sizes 784-32-10, backend numpy, test accuracy ")


def test_result_seconds_and_timings_agree_with_the_cli_json(mnist) -> None:
    from subset import Subset

    result = pm.train("flux-tutorial", data=Subset(mnist, 2000, 500), steps=2, hidden=8)
    summary = result.summary()
    assert isinstance(result.seconds, float) and summary["seconds"] == round(result.seconds, 3)
    assert set(result.timings) == {"setup", "train", "evaluate", "total"} == set(summary["timings"])
    assert result.seconds == result.timings["total"]
    text = repr(result)
    assert "\n" not in text and len(text) < 200 and "TrainResult(flux-tutorial (hidden 8, steps 2)" in text


def test_readme_python_example_runs_as_written(mnist_dir, tmp_path, monkeypatch) -> None:
    """The README's API block, executed (with ``steps=5`` added so it takes seconds, not minutes)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## The Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert 'seed=0)  # or backend="flux"' in code
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYFLUX_MNIST_DATA", str(mnist_dir))
    namespace: dict = {}
    exec(compile(code.replace("seed=0)", "seed=0, steps=5)", 1), "README.md", "exec"), namespace)
    assert (tmp_path / "tutorial.npz").is_file()
    assert isinstance(namespace["result"].seconds, float)


# --- 12. PyTorch's CPU-only build ---------------------------------------------------------------------


def test_readme_says_how_to_get_the_cpu_only_torch() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The PyTorch backend", 1)[1].split("\n## ", 1)[0]
    assert "pip install 'pyflux-mnist[torch]'" in section and "CPU-only build" in section
    assert "nvidia-*" in section and "--index-url" in section


# --- 11. bench: its help, its bound, its header -------------------------------------------------------


def test_bench_roofline_is_the_best_rate_of_the_run_and_says_so() -> None:
    from pyflux_mnist.bench import _finish_row, render_text, roofline_bound

    roof = roofline_bound(0.066, [66.0, 30.0], None)  # the sgemm rate swung between two rounds
    assert roof["sgemm_gflops"] == 66.0 and roof["ms_per_step"] == pytest.approx(1.0)
    row = {"backend": "numpy", "status": "ok", "reason": None, "_times": [0.0024, 0.0024]}  # 2 steps each
    row = _finish_row(row, None, roof, 2, 100, None)
    # 1.2 ms against the 1.0 ms bound: 1.2 x, never below 1 because a slow round measured a slow sgemm.
    assert row["ratio_to_roofline"] == pytest.approx(1.2)
    machine = {"cpu": "x", "usable_cpus": 2, "logical_cpus": 2, "threads": 1, "numpy": "2", "python": "3"}
    settings = {"recipe": "keras", "samples_per_step": 100, "repeat": 2, "steps": 2, "seed": 0}
    setup = {"setup": {"import": 0.1, "init": 0.1, "first_step": 0.1}, "setup_seconds": 0.3}
    result = {
        "date": "today",
        "machine": {**machine, "torch": None, "blas": []},
        "settings": {**settings, "batch_size": 100, "steps_per_epoch": None},
        "roofline": roof,
        "results": [{**row, **setup}],
    }
    text = render_text(result)
    assert "best sgemm of 2 rounds; lowest 30" in text
    assert "torch not installed" in text and "torch None" not in text


def test_bench_help_gives_the_real_default_steps() -> None:
    from pyflux_mnist.bench import default_steps

    result = CliRunner().invoke(cli, ["bench", "--help"], terminal_width=200)
    assert "10 for a full-batch recipe, else one epoch, at most 2000 steps" in " ".join(result.output.split())
    assert default_steps(pm.get_recipe("flux-tutorial"), 60000) == 10
    assert default_steps(pm.get_recipe("keras"), 60000) == 469
    assert default_steps(pm.get_recipe("rashid"), 60000) == 2000


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`pyflux-mnist info | head -1`: once head has gone, writing to the pipe fails; that is no error of the
    user's, so no `Error:` line and no traceback, and the exit code SIGPIPE would give (141)."""
    import os
    import subprocess

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pyflux_mnist", "info"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert r.returncode == 141 and r.stderr == ""
