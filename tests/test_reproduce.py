"""The reproduce command: rows, seeds, the table, JSON and Markdown, with a stand-in for training (the
recipes themselves are trained in tests/test_recipes.py), and one real short run through the CLI."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from pyflux_mnist import reproduce as rp
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import SpecError
from pyflux_mnist.recipes import RECIPES


def _fake_train(accuracies: dict[tuple[str, int], float]):
    calls = []

    def train_fn(run, data, on_progress=None):
        calls.append((run.recipe.name, run.seed))
        if on_progress:
            on_progress(1, 1, 0.5)
        acc = accuracies.get((run.recipe.name, run.seed), 0.9)
        return SimpleNamespace(test_accuracy=acc, train_accuracy=acc + 0.01, seconds=2.0)

    return train_fn, calls


def test_rows_compare_with_the_published_number_over_seeds() -> None:
    train_fn, calls = _fake_train({("keras", 0): 0.976, ("keras", 1): 0.978, ("keras", 2): 0.977})
    rows = rp.reproduce(
        ["keras", "rashid-rotations-10"], "numpy", [0, 1, 2], data=object(), train_fn=train_fn
    )
    keras, rot10 = rows
    assert keras.seeds == [0, 1, 2] and keras.test_accuracy == pytest.approx(0.977)
    assert keras.std == pytest.approx(0.001)
    assert keras.difference_points == pytest.approx(100 * (0.977 - 0.9758))
    assert keras.verdict == "reproduced"
    assert rot10.seeds == [0]  # expensive: the first seed only
    assert ("rashid-rotations-10", 1) not in calls
    assert rot10.verdict == "below"  # 0.9 against 0.9787
    d = keras.to_dict()
    for key in ("recipe", "backend", "published", "test_accuracy", "seconds"):
        assert key in d
    assert json.loads(json.dumps([r.to_dict() for r in rows]))[0] == json.loads(json.dumps(d))


def test_a_backend_that_cannot_express_a_recipe_gives_a_skipped_row() -> None:
    pytest.importorskip("torch")
    train_fn, calls = _fake_train({})
    rows = rp.reproduce(["rashid", "keras"], "torch", [0], data=object(), train_fn=train_fn)
    assert rows[0].status == "skipped" and "only the NumPy backend" in rows[0].reason
    assert calls == [("keras", 0)]  # rashid never started


def test_cheap_and_expensive_recipes() -> None:
    cheap = {name for name, r in RECIPES.items() if rp.is_cheap(r)}
    assert cheap == set(RECIPES) - {"rashid-rotations-5", "rashid-rotations-10"}
    assert rp.total_steps(RECIPES["rashid-rotations-10"]) == 1_800_000
    assert rp.total_steps(RECIPES["keras"]) == 5 * 469


def test_skipped_recipe_and_unpublished_number_render() -> None:
    rows = [
        rp.Row("flux-tutorial", "numpy", None, [0], [0.95], [0.96], [3.0]),
        rp.Row("rashid", "torch", 0.954, status="skipped", reason="cannot express it"),
    ]
    table = rp.render_table(rows)
    assert "flux-tutorial" in table and "no published number" in table
    assert "rashid: cannot express it" in table
    md = rp.render_markdown(rows, command="--all")
    assert md.startswith("# Reproductions") and "| recipe | published | ours |" in md
    assert "### `rashid`" in md and "Not run on the torch backend" in md
    assert RECIPES["rashid"].notes in md and "Seeds: 0." in md


def test_names_and_seeds_are_checked() -> None:
    assert rp.resolve_names([], True) == list(RECIPES)
    assert rp.resolve_names(["keras", "keras"], False) == ["keras"]
    for names, all_ in (([], False), (["keras"], True), (["nope"], False)):
        with pytest.raises(SpecError):
            rp.resolve_names(names, all_)
    assert rp.parse_seeds("0,1, 2") == [0, 1, 2]
    for bad in ("", "a", "1,1", "-1"):
        with pytest.raises(SpecError):
            rp.parse_seeds(bad)


def test_cli_errors_are_one_line(mnist_dir) -> None:
    runner = CliRunner()
    for args in (["nope"], [], ["keras", "--seed", "1", "--seeds", "0,1"], ["keras", "--seeds", "x"]):
        result = runner.invoke(cli, ["reproduce", *args, "--data-dir", str(mnist_dir)])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_cli_runs_a_recipe_end_to_end(mnist_dir, tmp_path, monkeypatch) -> None:
    """The real command on real data, shortened: the numpy-twolayer recipe cut to 150 steps."""
    short = RECIPES["numpy-twolayer"].replace(steps=150)
    monkeypatch.setitem(RECIPES, "numpy-twolayer", short)
    md = tmp_path / "r.md"
    runner = CliRunner()
    args = ["reproduce", "numpy-twolayer", "--data-dir", str(mnist_dir), "--markdown", str(md), "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["recipe"] == "numpy-twolayer" and row["backend"] == "numpy" and row["published"] == 0.9623
    assert row["test_accuracy"] > 0.5 and row["seconds"] > 0 and row["seeds"] == [0]
    assert "numpy-twolayer" in md.read_text()
    result = runner.invoke(cli, ["reproduce", "numpy-twolayer", "--data-dir", str(mnist_dir), "--seed", "3"])
    assert result.exit_code == 0 and "numpy-twolayer" in result.stdout and "0.9623" in result.stdout
