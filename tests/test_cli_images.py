"""The predict, backquery and show commands, end to end through click."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from renderings import render

from pyflux_mnist.cli import cli


@pytest.fixture(scope="module")
def model_path(small_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    small_model.save(path)
    return path


def test_predict_json_with_a_bad_file(tmp_path, mnist, model_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"d{i}.jpg"
        render(mnist.test_images[i], "colour", rng).save(p, quality=90)
        paths.append(str(p))
    (tmp_path / "empty.png").write_bytes(b"")
    args = ["predict", str(model_path), *paths, str(tmp_path / "empty.png"), "--json"]
    args += ["--save-preprocessed", str(tmp_path / "seen")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert [o["path"] for o in out] == [*paths, str(tmp_path / "empty.png")]
    for o in out[:3]:
        assert set(o) == {"path", "label", "probabilities", "preprocessed", "strip"}  # the files written
        assert len(o["probabilities"]) == 3  # --top 3
        assert next(iter(o["probabilities"])) == str(o["label"])
    assert "empty" in out[3]["error"] and "label" not in out[3]
    assert sum(o["label"] == int(t) for o, t in zip(out, mnist.test_labels[:3], strict=False)) >= 2
    seen = sorted(p.name for p in (tmp_path / "seen").iterdir())
    assert seen == ["d0-strip.png", "d0.png", "d1-strip.png", "d1.png", "d2-strip.png", "d2.png"]


def test_predict_text(tmp_path, mnist, model_path):
    p = tmp_path / "seven.png"
    render(mnist.test_images[0], "big", np.random.default_rng(0)).save(p)
    r = CliRunner().invoke(cli, ["predict", str(model_path), str(p), "--top", "2"])
    assert r.exit_code == 0, r.output
    line = r.output.strip()
    assert line.startswith(f"{p}: ") and line.count(": ") == 3  # path, then two "digit: p"


def test_backquery_command(tmp_path, model_path, mnist_dir):
    out = tmp_path / "bq.jpg"
    args = ["backquery", str(model_path), "-o", str(out), "--check-with", str(model_path)]
    r = CliRunner().invoke(cli, [*args, "--data-dir", str(mnist_dir)])
    assert r.exit_code == 0, r.output
    assert "back-query (prior)" in r.output
    assert "the network reads them as 0 1 2 3 4 5 6 7 8 9  (10 of 10 its digit)" in r.output
    assert "m reads them as 0 1 2 3 4 5 6 7 8 9" in r.output
    img = Image.open(out)
    assert img.format == "JPEG"
    grey = np.asarray(img.convert("L"))
    assert grey.shape[0] > 200 and grey.std() > 20
    r = CliRunner().invoke(cli, ["backquery", str(model_path), "-o", str(out), "--method", "optimise"])
    assert r.exit_code == 0 and "back-query (optimise)" in r.output


def test_backquery_refuses_an_unknown_picture_suffix_first(tmp_path, model_path):
    r = CliRunner().invoke(cli, ["backquery", str(model_path), "-o", str(tmp_path / "bq.gif")])
    assert r.exit_code == 1 and r.output.startswith("Error: -o ") and ".svg, not .gif" in r.output
    assert not (tmp_path / "bq.gif").exists()


def test_show_weights(tmp_path, model_path):
    out = tmp_path / "w.png"
    r = CliRunner().invoke(cli, ["show", "weights", str(model_path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "32 of 32" in r.output and Image.open(out).size[0] > 100


def test_show_samples(tmp_path, mnist_dir):
    pytest.importorskip("pyflux_mnist.mnist")
    out = tmp_path / "s.png"
    args = ["show", "samples", "--split", "test", "-n", "16", "-o", str(out), "--data-dir", str(mnist_dir)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert Image.open(out).size[0] > 100


def test_missing_model_is_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["backquery", str(tmp_path / "nope.npz")])
    assert r.exit_code == 1 and "Error:" in r.output


def test_evaluate_pictures_in_the_formats_named(tmp_path, model_path, mnist_dir):
    pytest.importorskip("matplotlib")
    conf, errs = tmp_path / "c.svg", tmp_path / "e.pdf"
    args = ["evaluate", str(model_path), "--confusion", str(conf), "--errors", str(errs)]
    r = CliRunner().invoke(cli, [*args, "--data-dir", str(mnist_dir)])
    assert r.exit_code == 0, r.output
    svg = conf.read_text()
    assert "<svg" in svg[:400] and "Confusion matrix: flux-tutorial" in svg.replace("&#45;", "-")
    assert errs.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    "args",
    [
        ["show", "samples", "-o", "{tmp}/s.gif"],
        ["show", "weights", "{model}", "-o", "{tmp}/w.bmp"],
        ["evaluate", "{model}", "--confusion", "{tmp}/c.png", "--errors", "{tmp}/e.tif"],
        ["backquery", "{model}", "-o", "{tmp}/b.tiff"],
    ],
)
def test_picture_commands_refuse_a_suffix_before_any_work(tmp_path, model_path, args, monkeypatch):
    monkeypatch.setenv("PYFLUX_MNIST_DATA", str(tmp_path / "no-data-here"))  # reached only after the check
    args = [a.format(tmp=tmp_path, model=model_path) for a in args]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and r.output.startswith("Error: -"), r.output
    assert "a digit grid can be written as .jpeg, .jpg, .pdf, .png, .svg, not ." in r.output
    assert list(tmp_path.iterdir()) == []
