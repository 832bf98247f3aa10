"""One run, described once (pyflux_mnist/run.py): types checked at the boundary with the package's own line,
the same bad value refused in the same words by the Python API, the CLI and the web API, and a Run that
travels to another process as JSON and comes back the same."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import pyflux_mnist as pm
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import SpecError
from pyflux_mnist.recipes import DEFAULT_RECIPE, RECIPES
from pyflux_mnist.run import Overrides, Run, build_run


def _no_data(*args, **kwargs):
    raise AssertionError("the data was loaded before the options were checked")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # main: "recipe 'flux-tutorial' has 1 hidden layer(s); got 2 width(s)" (the string split into digits)
        ({"hidden": "64"}, "hidden takes widths like 32 or 512,256,128, got '64'"),
        # main: TypeError: '>' not supported between instances of 'str' and 'int'
        ({"lr": "0.1"}, "lr must be a number, got '0.1'"),
        ({"steps": "10"}, "steps must be a whole number, got '10'"),
        ({"steps": 2.5}, "steps must be a whole number, got 2.5"),
        ({"epochs": True}, "epochs must be a whole number, got True"),
        ({"batch_size": "64"}, "batch_size must be a whole number, got '64'"),
        ({"hidden": [32, "8"]}, "hidden takes widths like 32 or 512,256,128, got [32, '8']"),
        ({"seed": "0"}, "seed must be a whole number, got '0'"),
        ({"recipe": 3}, "recipe must be a name or a Recipe, got 3"),
        ({"backend": 3}, "backend must be a name, got 3"),
    ],
)
def test_the_api_refuses_a_wrong_type_in_one_line_naming_the_option(kwargs, message, monkeypatch) -> None:
    monkeypatch.setattr("pyflux_mnist.mnist.load_mnist", _no_data)
    with pytest.raises(SpecError) as e:
        pm.train(**kwargs)
    assert str(e.value) == message


#: (Python API keywords, CLI arguments of ``train``, web API body): the same bad value on each surface.
SAME_VALUE = [
    ({"steps": -5}, ["--steps", "-5"], {"steps": -5}),
    ({"steps": "ten"}, ["--steps", "ten"], {"steps": "ten"}),
    ({"epochs": 0}, ["--epochs", "0"], {"epochs": 0}),
    ({"steps": 3, "epochs": 1}, ["--steps", "3", "--epochs", "1"], {"steps": 3, "epochs": 1}),
    ({"seed": -1}, ["--seed", "-1"], {"seed": -1}),
    ({"seed": "x"}, ["--seed", "x"], {"seed": "x"}),
    ({"recipe": "kerass"}, ["--recipe", "kerass"], {"recipe": "kerass"}),
    ({"backend": "pytorch"}, ["--backend", "pytorch"], {"backend": "pytorch"}),
    ({"recipe": "rashid", "backend": "torch"}, ["--recipe", "rashid", "--backend", "torch"], None),
]


@pytest.mark.parametrize(("api", "argv", "body"), SAME_VALUE)
def test_the_same_bad_value_gets_the_same_words_everywhere(api, argv, body, small_model, monkeypatch) -> None:
    monkeypatch.setattr("pyflux_mnist.mnist.load_mnist", _no_data)
    with pytest.raises(SpecError) as e:
        pm.train(**api)
    message = str(e.value)
    assert "\n" not in message

    result = CliRunner().invoke(cli, ["train", *argv])
    assert result.exit_code == 1 and result.output == f"Error: {message}\n", result.output

    if body is not None:
        pytest.importorskip("starlette")
        pytest.importorskip("httpx2")
        from starlette.testclient import TestClient

        from pyflux_mnist.web.app import Server, create_app
        from pyflux_mnist.web.guard import allowed_hosts
        from pyflux_mnist.web.state import Loaded

        server = Server(Loaded(small_model, 1, "file", ""))
        app = create_app(server, allowed_hosts("127.0.0.1", 8000))
        with TestClient(app, base_url="http://127.0.0.1:8000") as client:
            r = client.post("/api/train", json=body)
        assert (r.status_code, r.json()) == (400, {"error": message})


def test_unknown_names_suggest_the_close_one() -> None:
    with pytest.raises(SpecError, match=r"unknown recipe 'kerass' \(did you mean 'keras'\?\); choose one of"):
        build_run("kerass")
    with pytest.raises(
        SpecError, match=r"unknown backend 'pytorch' \(did you mean 'torch'\?\); choose one of"
    ):
        build_run(backend="pytorch")


def test_overrides_apply_once_and_say_what_changed() -> None:
    changes = Overrides(steps=3, hidden=16, lr=0.01)
    run = build_run("flux-tutorial", "numpy", 7, changes)
    assert (run.recipe.steps, run.recipe.model.sizes, run.recipe.optimizer.lr) == (3, (784, 16, 10), 0.01)
    assert run.recipe.notes.startswith("Changed here: hidden 16, steps 3, lr 0.01.")
    assert changes.given() == {"steps": 3, "lr": 0.01, "hidden": (16,)}
    assert build_run().recipe is RECIPES[DEFAULT_RECIPE]  # no overrides: the registered recipe itself


def test_a_run_travels_as_json_and_comes_back_equal() -> None:
    run = build_run("keras", "numpy", 3, Overrides(epochs=1, hidden=8))
    back = Run.from_json(run.to_json())
    assert back == run
    with pytest.raises(SpecError, match="seed must be an integer between 0"):
        Run.from_json(run.to_json().replace('"seed": 3', '"seed": -3'))
    with pytest.raises(SpecError, match="unknown backend 'tensorflow'"):
        Run.from_json(run.to_json().replace('"backend": "numpy"', '"backend": "tensorflow"'))


def test_a_step_bound_is_the_recipe_own_rule() -> None:
    """The bound lives in spec.py: a recipe built by hand meets it as an override does."""
    with pytest.raises(SpecError, match="steps must be a non-negative integer up to 10000000"):
        RECIPES["keras"].replace(steps=10**8)
    with pytest.raises(SpecError, match="steps must be a positive integer up to 10000000"):
        Overrides(steps=10**8)
