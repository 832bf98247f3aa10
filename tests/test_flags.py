"""Yes/no environment variables: one parser (flags.parse_flag) for every switch, so the same word means the
same thing in each, and a word that is neither is refused in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pyflux_mnist import settings
from pyflux_mnist.backends import julia_bridge as jb
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import PyfluxError
from pyflux_mnist.flags import FALSE, TRUE


@pytest.mark.parametrize("word", [w for w in FALSE if w])
def test_every_no_switches_julia_off_and_offline_off_alike(word) -> None:
    """main: PYFLUX_MNIST_JULIA=n left Flux on (its own list said only 0/false/no/off) while
    PYFLUX_MNIST_OFFLINE=n meant no."""
    env = {settings.JULIA.name: word, settings.OFFLINE.name: word}
    assert settings.JULIA.is_no(env) and not settings.OFFLINE.flag(env)


@pytest.mark.parametrize("word", TRUE)
def test_every_yes_leaves_julia_on(word) -> None:
    env = {settings.JULIA.name: word, settings.OFFLINE.name: word}
    assert not settings.JULIA.is_no(env) and settings.OFFLINE.flag(env)


def test_unset_leaves_julia_on() -> None:
    assert not settings.JULIA.is_no({})


def test_a_word_that_is_neither_is_refused_in_one_line(monkeypatch) -> None:
    """main: PYFLUX_MNIST_JULIA=maybe silently left the Flux backend on."""
    with pytest.raises(PyfluxError, match=r"^PYFLUX_MNIST_JULIA='maybe' is neither yes nor no; use one of"):
        settings.JULIA.is_no({settings.JULIA.name: "maybe"})
    monkeypatch.setenv(settings.JULIA.name, "maybe")
    monkeypatch.setattr(jb, "_failure", None)
    result = CliRunner().invoke(cli, ["train", "--backend", "flux", "--steps", "1"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: PYFLUX_MNIST_JULIA='maybe' is neither yes nor no")
    assert len(result.output.strip().splitlines()) == 1
