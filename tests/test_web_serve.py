"""``pyflux-mnist serve`` as a process: the URL it prints, Ctrl-C, the warning for other hosts, a busy port,
and the model it picks when none is given."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyflux_mnist", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return err


def stop_cleanly(proc: subprocess.Popen[str]) -> str:
    """:func:`stop`, and the exit was a clean one (0): what a class's server must do on Ctrl-C."""
    err = stop(proc)
    assert proc.returncode == 0, err
    return err


@pytest.fixture
def model_file(small_model, tmp_path: Path) -> Path:
    return small_model.save(tmp_path / "model.npz")


def test_serves_a_model_file_until_ctrl_c(model_file: Path):
    proc, line = start([str(model_file), "--port", "0"], {})
    try:
        assert line.startswith("serving flux-tutorial on http://127.0.0.1:")
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url + "api/model", timeout=10) as r:
            assert json.load(r)["recipe"] == "flux-tutorial"
        request = urllib.request.Request(url + "api/model", headers={"Host": "rebound.example"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=10)
        assert e.value.code == 421
    finally:
        err = stop(proc)
    assert proc.returncode == 0
    assert err.strip() == "stopped"  # one line, no traceback


def test_other_hosts_get_a_warning(model_file: Path):
    proc, line = start([str(model_file), "--host", "0.0.0.0", "--port", "0"], {})
    try:
        assert "serving" in line
    finally:
        err = stop(proc)
    assert proc.returncode == 0
    assert err.startswith("Warning: listening on 0.0.0.0, not only this machine")


@pytest.mark.parametrize("host", ["127.1", "::ffff:127.0.0.1"])
def test_loopback_spelled_otherwise_is_still_this_machine_only(model_file: Path, host: str):
    """``127.1`` and ``::ffff:127.0.0.1`` are 127.0.0.1: no warning, and the URL printed (with the address a
    browser sends in ``Host``) answers. The old code warned "not only this machine" for both."""
    try:
        socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        pytest.skip(f"{host} cannot be resolved here")
    proc, line = start([str(model_file), "--host", host, "--port", "0"], {})
    try:
        assert line.startswith("serving flux-tutorial on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url + "api/model", timeout=10) as r:
            assert json.load(r)["recipe"] == "flux-tutorial"
    finally:
        err = stop(proc)
    assert proc.returncode == 0
    assert err.strip() == "stopped", err


def test_a_busy_port_is_one_line(model_file: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "pyflux_mnist", "serve", str(model_file), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use "
        f"(another server is running there: try --port {port + 1})"
    ]


def test_a_bad_model_file_is_one_line(tmp_path: Path):
    bad = tmp_path / "not-a-model.npz"
    bad.write_bytes(b"hello")
    r = subprocess.run(
        [sys.executable, "-m", "pyflux_mnist", "serve", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and "Traceback" not in r.stderr


def test_no_model_uses_the_last_one_trained_here(small_model, tmp_path: Path, monkeypatch):
    from pyflux_mnist.web.serve import initial_model
    from pyflux_mnist.web.state import losses_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from pyflux_mnist.web.app import last_model_path

    last = last_model_path()
    last.parent.mkdir(parents=True)
    small_model.save(last)
    said: list[str] = []
    loaded = initial_model(None, None, said.append)
    assert said == [f"using the last model trained here: {last}"]
    assert loaded.model.recipe.name == "flux-tutorial" and loaded.source == "last trained here"
    assert loaded.losses is None and not losses_path(last).exists()


def test_the_socket_says_tcp_so_responses_are_not_held_back():
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; without it every keep-alive
    response waited ~40 ms for the client's delayed ACK."""
    from pyflux_mnist.web.serve import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
    finally:
        sock.close()
