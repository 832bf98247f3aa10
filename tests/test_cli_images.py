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
        assert set(o) == {"path", "label", "probabilities"} and len(o["probabilities"]) == 3  # --top 3
        assert next(iter(o["probabilities"])) == str(o["label"])
    assert "empty" in out[3]["error"] and "label" not in out[3]
    assert sum(o["label"] == int(t) for o, t in zip(out, mnist.test_labels[:3], strict=False)) >= 2
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["d0.png", "d1.png", "d2.png"]


def test_predict_text(tmp_path, mnist, model_path):
    p = tmp_path / "seven.png"
    render(mnist.test_images[0], "big", np.random.default_rng(0)).save(p)
    r = CliRunner().invoke(cli, ["predict", str(model_path), str(p), "--top", "2"])
    assert r.exit_code == 0, r.output
    line = r.output.strip()
    assert line.startswith(f"{p}: ") and line.count(": ") == 3  # path, then two "digit: p"


def test_backquery_command(tmp_path, model_path):
    out = tmp_path / "bq.png"
    r = CliRunner().invoke(cli, ["backquery", str(model_path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "optimise" in r.output
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] > 200 and img.std() > 20


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
