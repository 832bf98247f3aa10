"""The first hour, round three (issue 23, items 4, 5, 7-11): what a newcomer tried on a fresh clone.

Each test runs the command that showed the rough edge: mixed means on a loss plot, clipped titles, a
folder created without a word, messages that name "it", hints that point to the worse method, wording of
a resumed run, and a picture too tall for a projector.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pyflux_mnist.cli import cli


@pytest.fixture(scope="module")
def model_file(small_model, tmp_path_factory) -> Path:
    return small_model.save(tmp_path_factory.mktemp("model") / "m.npz")


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- 8. small things a newcomer meets -------------------------------------------------------------------


def test_no_arguments_prints_the_usage_and_exits_0() -> None:
    result = _invoke()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert "train " in result.output and "predict " in result.output


def test_info_shows_the_model_first(model_file) -> None:
    lines = _invoke("info", str(model_file)).stdout.splitlines()
    assert lines[0].startswith(f"model        {model_file}: Model(flux-tutorial")
    assert any(line.startswith("pyflux-mnist ") for line in lines[2:])
    assert next(iter(json.loads(_invoke("info", str(model_file), "--json").stdout))) == "model"


@pytest.mark.parametrize(("content", "why"), [("notes, not JSON\n", "not JSON"), ('{"a": 1}', "no settings")])
def test_bench_from_json_says_a_file_is_not_a_bench_result(tmp_path, content, why) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(content)
    result = CliRunner().invoke(cli, ["bench", "--from-json", str(notes)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {notes} is not a bench result (the JSON that bench --json")
    assert why in result.stderr and "Traceback" not in result.output + result.stderr


def test_bench_from_json_still_reads_a_bench_result() -> None:
    result = _invoke(
        "bench", "--from-json", str(Path(__file__).parent.parent / "docs/bench/2026-11-30-xeon/rashid.json")
    )
    assert result.exit_code == 0 and "recipe rashid" in result.stdout


@pytest.mark.parametrize(
    ("option", "name"), [("--save", "out.txt"), ("--save", "model"), ("--checkpoint", "c.png")]
)
def test_model_and_checkpoint_names_must_end_in_npz(tmp_path, option, name) -> None:
    result = CliRunner().invoke(cli, ["train", "--steps", "1", option, str(tmp_path / name)])
    assert result.exit_code == 1
    assert "a .npz archive; give a name ending in .npz" in result.stderr
    assert not (tmp_path / name).exists()


def test_reproduction_json_carries_no_float_noise() -> None:
    from pyflux_mnist.reproduce import Row

    row = Row("tensorflow-tutorial", "numpy", 0.9206, [0, 1, 2], [0.9174, 0.9139, 0.9196],
              [0.9189090909090909] * 3, [8.440874253999937, 7.3, 8.9])  # fmt: skip
    d = row.to_dict()
    assert Row("x", "numpy", 0.9206, [0], [0.9228]).to_dict()["difference_points"] == 0.22
    assert d["test_accuracy"] == 0.916967 and d["difference_points"] == -0.3633
    assert d["run_seconds"][0] == 8.441 and d["train_accuracies"][0] == 0.918909
    assert all(len(repr(v)) <= 9 for v in (d["std"], d["seconds"]))


def test_predict_names_the_file_not_it_and_json_does_not_repeat_the_path(tmp_path, model_file) -> None:
    notes, folder = tmp_path / "notes.txt", tmp_path / "folder"
    notes.write_text("not a picture")
    folder.mkdir()
    result = CliRunner().invoke(cli, ["predict", str(model_file), str(notes), str(folder)])
    assert result.stdout.splitlines() == [
        f"{notes}: error: not an image in a format read here (PNG, JPEG, GIF, BMP, TIFF, WEBP, PPM)",
        f"{folder}: error: a directory, not an image",
    ]
    records = json.loads(CliRunner().invoke(cli, ["predict", "--json", str(model_file), str(notes)]).stdout)
    assert records == [{"path": str(notes), "error": "not an image in a format read here "
                        "(PNG, JPEG, GIF, BMP, TIFF, WEBP, PPM)"}]  # fmt: skip


# --- 4. one kind of mean on a loss plot -------------------------------------------------------------------


def test_loss_plot_means_are_arithmetic_and_labelled_on_a_log_axis(tmp_path) -> None:
    from pyflux_mnist.charts import loss_curve_png, running_mean

    rng = np.random.default_rng(0)
    losses = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), 3000))  # per-sample steps: four decades apart
    fig = loss_curve_png(losses, tmp_path / "loss.png", epoch_steps=1000)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    window = 61
    running = lines[f"mean of {window} steps (running)"]
    np.testing.assert_allclose(running.get_ydata(), running_mean(losses, window))  # not a geometric mean
    dots = lines["mean over each whole epoch"]
    np.testing.assert_allclose(dots.get_ydata(), losses.reshape(3, 1000).mean(axis=1))
    # the two means agree: the running mean over the last epoch averages to the epoch's dot
    assert abs(np.mean(running.get_ydata()[-900:]) - dots.get_ydata()[-1]) < 0.25 * dots.get_ydata()[-1]


def test_train_summary_says_what_the_final_loss_is_and_gives_the_epoch_mean(mnist_dir) -> None:
    args = ["train", "--epochs", "1", "--batch-size", "6000", "--hidden", "8", "--data-dir", str(mnist_dir)]
    lines = _invoke(*args).stdout.splitlines()
    final = next(line for line in lines if line.startswith("final loss"))
    assert final.endswith("(the last step's, on its batch of 6000 samples)")
    epoch = next(line for line in lines if line.startswith("epoch loss"))
    assert epoch.endswith("(the mean over the last epoch's 10 steps)")
    out = json.loads(_invoke(*args, "--json").stdout)
    assert out["last_epoch_mean_loss"] > 0 and f"{out['last_epoch_mean_loss']:.4f}" in epoch
    assert repr(out["final_loss"]) == str(np.float32(out["final_loss"]))  # float32 digits, no float64 noise


# --- 5. titles wrap between phrases, never clip -------------------------------------------------------


def _model_with(**overrides):
    from pyflux_mnist.model import Model
    from pyflux_mnist.run import Overrides, resolve_recipe

    recipe = resolve_recipe("flux-tutorial", Overrides(**overrides))
    params = [np.zeros(s, np.float32) for pair in recipe.model.shapes for s in pair]
    return Model(recipe, params, {"backend": "numpy", "test_accuracy": 0.9534})


def _inside_the_figure(fig, text) -> bool:
    box = text.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= 0 and box.x1 <= fig.get_figwidth() * fig.dpi


def test_a_long_loss_title_wraps_instead_of_clipping(tmp_path) -> None:
    model = _model_with(hidden=(64,), epochs=1, lr=0.01, batch_size=128)  # the command
    fig = loss_curve_png_of(model, 469, tmp_path / "ov.jpg", epoch_steps=469)
    assert fig._suptitle.get_text() == (
        "Training loss: flux-tutorial (hidden 64, epochs 1, batch size 128, lr 0.01),\n"
        "469 steps of 469 per epoch"
    )
    assert _inside_the_figure(fig, fig._suptitle)


def test_the_loss_title_does_not_repeat_a_steps_override(tmp_path) -> None:
    fig = loss_curve_png_of(_model_with(steps=60), 60, tmp_path / "m.png")
    assert fig._suptitle.get_text() == "Training loss: flux-tutorial, 60 steps"
    fig = loss_curve_png_of(_model_with(steps=60, lr=0.01), 60, tmp_path / "m.png")
    assert fig._suptitle.get_text() == "Training loss: flux-tutorial (lr 0.01), 60 steps"


def test_a_long_confusion_title_wraps(tmp_path) -> None:
    from pyflux_mnist.charts import confusion_chart

    m = np.diag(np.full(10, 100))
    fig = confusion_chart(m, tmp_path / "c.png", _model_with(hidden=(64,), epochs=1, lr=0.01, batch_size=128))
    assert (
        fig._suptitle.get_text()
        == "Confusion matrix: flux-tutorial\n(hidden 64, epochs 1, batch size 128, lr 0.01)"
    )
    assert _inside_the_figure(fig, fig._suptitle)


def test_the_back_query_title_breaks_around_the_parenthesis_at_600_px(tmp_path) -> None:
    from pyflux_mnist.pictures import backquery_png

    model = _model_with(hidden=(64,), epochs=1, lr=0.01, batch_size=128)
    readers = [("self", np.eye(10))]  # as the CLI draws it: a caption line for the network's reading
    grid = backquery_png(np.zeros((10, 28, 28)), tmp_path / "bq.png", "prior", model=model, readers=readers)
    assert grid.image.width <= 600
    from pyflux_mnist.pictures import PAD, TITLE_PX, _wrap

    name = "flux-tutorial (hidden 64, epochs 1, batch size 128, lr 0.01)"
    assert _wrap(
        f"Back-query: the image {name} would call each digit", TITLE_PX, grid.image.width - 2 * PAD
    ) == [
        "Back-query: the image flux-tutorial",
        "(hidden 64, epochs 1, batch size 128, lr 0.01)",
        "would call each digit",
    ]


def test_wrap_title_falls_back_to_commas_then_words() -> None:
    from pyflux_mnist.titles import wrap_title

    assert wrap_title("a: (bb, cc, dd) ee", 8, len) == ["a:", "(bb, cc,", "dd) ee"]
    assert wrap_title("abcdefghijkl mn", 5, len) == ["abcdefghijkl", "mn"]  # a word wider than the line
    assert wrap_title("one\ntwo", 80, len) == ["one", "two"]


def loss_curve_png_of(model, steps, path, epoch_steps=None):
    from pyflux_mnist.charts import loss_curve_png

    return loss_curve_png(np.linspace(2, 0.1, steps), path, epoch_steps=epoch_steps, model=model)


# --- 7. predict --save-preprocessed: a folder made and said, files named with their image ---------------


def _digit_file(path: Path, mnist, i: int) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(255 - mnist.test_images[i]).resize((112, 112)).save(path)
    return str(path)


def test_save_preprocessed_refuses_a_missing_parent_as_train_save_does(tmp_path, mnist, model_file) -> None:
    png = _digit_file(tmp_path / "x.png", mnist, 0)
    target = tmp_path / "nope" / "dir"
    result = CliRunner().invoke(cli, ["predict", str(model_file), png, "--save-preprocessed", str(target)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        f"Error: --save-preprocessed {target}: folder {tmp_path / 'nope'} does not exist (only dir is made)\n"
    )
    assert not (tmp_path / "nope").exists()
    saved = CliRunner().invoke(cli, ["train", "--steps", "1", "--save", str(target / "m.npz")])
    assert saved.exit_code == 1 and "does not exist" in saved.stderr  # the same rule: no folder tree is grown


def test_save_preprocessed_says_what_it_wrote_and_from_which_image(tmp_path, mnist, model_file) -> None:
    a, b = _digit_file(tmp_path / "a" / "x.png", mnist, 0), _digit_file(tmp_path / "b" / "x.png", mnist, 1)
    seen = tmp_path / "seen"
    result = CliRunner().invoke(cli, ["predict", str(model_file), a, b, "--save-preprocessed", str(seen)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"created folder {seen}",
        f"wrote {seen / 'x.png'} and {seen / 'x-strip.png'}  (from {a})",
        f"wrote {seen / 'x-2.png'} and {seen / 'x-2-strip.png'}  (from {b})",
    ]
    again = CliRunner().invoke(
        cli, ["predict", str(model_file), b, "--save-preprocessed", str(seen), "--json"]
    )
    assert "created folder" not in again.stderr
    record = json.loads(again.stdout)[0]
    assert (record["preprocessed"], record["strip"]) == (str(seen / "x.png"), str(seen / "x-strip.png"))


# --- 11. a saved strip names its file and the answer; the error grid fits a projector ---------------------


def test_a_saved_strip_names_the_file_and_the_answer(tmp_path, mnist, model_file) -> None:
    from PIL import Image

    from pyflux_mnist import photo

    png = _digit_file(tmp_path / "seven.png", mnist, 0)
    [r] = photo.predict_files(pm_load(model_file), [png], save_dir=tmp_path / "seen")
    assert (
        photo._strip_heading(png, r) == f"{png}: read as {r['label']} ({r['probabilities'][r['label']]:.1%})"
    )
    saved = np.asarray(Image.open(r["strip"]).convert("L"))
    plain = np.asarray(photo.strip(photo.trace(png)).convert("L"))  # the web page's strip: no heading
    assert saved.shape[0] > plain.shape[0]
    band = saved[: saved.shape[0] - plain.shape[0]]
    assert (band < 100).sum() > 200  # the heading's ink
    assert (plain[:8] > 250).all()


def pm_load(path):
    from pyflux_mnist.model import load_model

    return load_model(path)


def test_the_error_grid_fits_one_projector_screen(tmp_path, mnist, model_file, mnist_dir) -> None:
    from PIL import Image

    from pyflux_mnist.pictures import SCREEN_HEIGHT, errors_png

    labels = mnist.test_labels
    grid = errors_png(mnist.test_images, labels, (labels + 1) % 10, tmp_path / "e.png")  # all 10000 wrong
    assert grid is not None and grid.image.height <= SCREEN_HEIGHT == 1080
    assert grid.layout.n % 10 == 0 and grid.layout.n < 100  # full rows, fewer than ten (1515 px)
    assert grid.image.height + grid.layout.cell_h > SCREEN_HEIGHT  # as many as fit
    path = tmp_path / "errors.png"
    result = _invoke("evaluate", str(model_file), "--errors", str(path), "--data-dir", str(mnist_dir))
    assert Image.open(path).height <= SCREEN_HEIGHT
    wrong = json.loads(_invoke("evaluate", str(model_file), "--json", "--data-dir", str(mnist_dir)).stdout)
    assert result.stdout.splitlines()[-1].startswith(f"errors         {path}  (")
    assert result.stdout.splitlines()[-1].endswith(f" of the {wrong['errors']} misclassified digits shown)")


# --- 9. back-query hints point to the method a person reads ----------------------------------------------


def test_rashid_on_a_relu_network_suggests_prior_not_optimise(model_file) -> None:
    result = CliRunner().invoke(cli, ["backquery", str(model_file), "--method", "rashid"])
    assert result.exit_code == 1
    assert "use the 'prior' method (what 'auto' picks for it)" in result.stderr
    assert "optimise" not in result.stderr


def test_prior_without_data_says_optimise_needs_none(tmp_path, model_file) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [
        "backquery",
        str(model_file),
        "-o",
        str(tmp_path / "bq.png"),
        "--data-dir",
        str(empty),
        "--offline",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "--method optimise needs no data, but a person reads only its 0 and 1" in result.stderr


def test_optimise_says_how_its_count_was_judged(tmp_path, model_file) -> None:
    out = _invoke("backquery", str(model_file), "-o", str(tmp_path / "bq.png"), "--method", "optimise").stdout
    assert "(judged by the networks' argmax, not by eye:" in out and "--method prior" in out


def test_auto_on_a_sigmoid_network_mentions_prior(tmp_path, rashid_model, mnist_dir) -> None:
    model = rashid_model.save(tmp_path / "r.npz")
    out = _invoke(
        "backquery", str(model), "-o", str(tmp_path / "bq.png"), "--data-dir", str(mnist_dir)
    ).stdout
    assert out.startswith("back-query (rashid) written to")
    assert "(auto picks Rashid's method for an all-sigmoid network, as his book does; --method prior" in out
    chosen = _invoke("backquery", str(model), "--method", "rashid", "-o", str(tmp_path / "b2.png")).stdout
    assert "auto picks" not in chosen  # asked for by name: nothing to explain


# --- 10. progress and resume wording ------------------------------------------------------------------


def test_tutorial_without_throttle_prints_the_last_loss_once(mnist_dir) -> None:
    out = _invoke("tutorial", "--throttle", "0", "--data-dir", str(mnist_dir)).stdout.splitlines()
    losses = [line for line in out if line.startswith("loss(X, Y)")]
    assert len(losses) == 200 and losses[-1].endswith("(step 200/200)")
    assert len(set(losses)) == 200


def test_a_resumed_run_counts_its_warm_up_after_the_checkpoint(tmp_path, mnist_dir) -> None:
    ck = tmp_path / "ck.npz"
    common = ["--data-dir", str(mnist_dir)]
    _invoke(
        "train", "--steps", "5", "--hidden", "8", "--checkpoint", str(ck), "--checkpoint-every", "3", *common
    )
    result = _invoke("train", "--resume", str(ck), *common)
    first = result.stderr.splitlines()[0]
    assert first.startswith("flux-tutorial [numpy]: step 4/5, loss ")
    assert first.endswith(" (resumed after step 3; set-up and first step: the warm-up)")
    assert "steps          5 (2 of them in this run)  in " in result.stdout


def test_resuming_a_finished_checkpoint_says_so_and_leaves_it(tmp_path, mnist_dir) -> None:
    ck = tmp_path / "ck.npz"
    common = ["--data-dir", str(mnist_dir)]
    _invoke(
        "train", "--steps", "6", "--hidden", "8", "--checkpoint", str(ck), "--checkpoint-every", "3", *common
    )
    before = (ck.read_bytes(), ck.stat().st_mtime_ns)
    result = _invoke("train", "--resume", str(ck), "--save", str(tmp_path / "m.npz"), *common)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{ck}: this run is complete already (6 of 6 steps): no step is trained and the checkpoint is left "
        "as it is; its model is evaluated"
    ]
    assert "steps          6 (0 of them in this run)" in result.stdout
    assert (ck.read_bytes(), ck.stat().st_mtime_ns) == before
    assert (tmp_path / "m.npz").exists()  # the way to take the model out of a finished checkpoint


def test_bench_from_json_reads_a_sweep_result_too() -> None:
    """A sweep's JSON (``bench --sweep … -o``) has ``sweep`` where a run's has ``results``."""
    saved = Path(__file__).parent.parent / "docs/bench/keras-sweep-hidden.json"
    result = _invoke("bench", "--from-json", str(saved))
    assert result.exit_code == 0 and result.stdout.startswith("pyflux-mnist bench --sweep hidden")
