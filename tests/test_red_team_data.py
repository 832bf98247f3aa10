"""Reliability, round two (issue 16, and issue 12 item 5): mirrors that never stop, a cache that is not
ours, a repair race, environment variables, and ``data download``. Mirrors are real HTTP servers on
127.0.0.1 (:mod:`local_mirror`)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from local_mirror import LocalMirror, Stream

import pyflux_mnist.mnist as mnist_module
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import DataError, PyfluxError
from pyflux_mnist.mnist import FILES, download, download_mnist, load_mnist

LABELS = "t10k-labels-idx1-ubyte"


def _linked_copy(src: Path, dst: Path, skip: str | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name != skip:
            os.link(src / f"{name}.gz", dst / f"{name}.gz")
    return dst


def _online(monkeypatch: pytest.MonkeyPatch, *urls: str) -> None:
    monkeypatch.delenv("PYFLUX_MNIST_OFFLINE", raising=False)
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("PYFLUX_MNIST_MIRRORS", ",".join(urls))


def _within(seconds: float, fn, *args, **kwargs) -> BaseException | None:
    """Run ``fn`` in a thread; fail the test if it is still running after ``seconds``; return its error."""
    box: list[BaseException | None] = [None]

    def target() -> None:
        try:
            fn(*args, **kwargs)
        except BaseException as e:
            box[0] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still downloading after {seconds} s"
    return box[0]


# --- item 3: a mirror is cut off -----------------------------------------------------------------------


def test_endless_mirror_is_cut_off(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 3: a valid gzip followed by endless bytes, no Content-Length; main kept streaming (56 MB after
    16 s). Now: stopped at the end of the gzip stream, nothing under the final name, no temporary left."""
    body = (mnist_dir / f"{LABELS}.gz").read_bytes()
    with LocalMirror() as mirror:
        mirror.routes[f"/e/{LABELS}.gz"] = Stream(body, endless=True)
        _online(monkeypatch, mirror.url("e"))
        error = _within(60, download, LABELS, tmp_path, progress=False)
        sent = mirror.streamed
    assert isinstance(error, DataError) and "could not download" in str(error)
    assert sent < 64 << 20, sent
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_endless_empty_blocks_are_capped_at_the_known_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 3, the byte cap: a gzip header followed by empty stored deflate blocks for ever is a valid,
    never-ending gzip stream that decompresses to nothing; main read it for ever. Now it stops after the
    most bytes a gzip of the file can take (:func:`max_download_bytes`)."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    empty_block = b"\x00\x00\x00\xff\xff"  # BFINAL=0, stored, LEN=0, NLEN=0xffff
    with LocalMirror() as mirror:
        mirror.routes[f"/z/{LABELS}.gz"] = Stream(header, endless=True, filler=empty_block * 13107)
        _online(monkeypatch, mirror.url("z"))
        error = _within(60, download, LABELS, tmp_path, progress=False)
        sent = mirror.streamed
    assert isinstance(error, DataError)
    limit = mnist_module.max_download_bytes(FILES[LABELS])
    assert limit < FILES[LABELS].size * 1.02 + (1 << 16)
    assert sent < limit + (8 << 20), sent  # what the server had queued when we hung up
    assert list(tmp_path.iterdir()) == []


def test_drip_feeding_mirror_hits_the_deadline(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Item 3: one byte every 0.2 s never trips the per-read timeout; main waited for ever (1 byte/2 s
    would take 5 days for this file). Now the overall deadline (shortened here from 600 s) ends it."""
    monkeypatch.setattr(mnist_module, "DEADLINE_S", 1.5)
    body = (mnist_dir / f"{LABELS}.gz").read_bytes()
    with LocalMirror() as mirror:
        mirror.routes[f"/d/{LABELS}.gz"] = Stream(body, piece=1, delay_s=0.2)
        _online(monkeypatch, mirror.url("d"))
        t0 = time.monotonic()
        error = _within(30, download, LABELS, tmp_path, progress=False)
        elapsed = time.monotonic() - t0
    assert isinstance(error, DataError), error
    assert "took longer than 2 s" in capsys.readouterr().err
    assert elapsed < 20
    assert list(tmp_path.iterdir()) == []


# --- item 6: a cache that is a link to the user's own folder -------------------------------------------


def test_cache_linked_to_a_user_folder_loses_nothing(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6: main deleted the user's own (non-MNIST) file as "corrupt cache". Now it is moved aside,
    and the error says where."""
    mine = _linked_copy(mnist_dir, tmp_path / "my-datasets", skip=LABELS)
    (mine / f"{LABELS}.gz").write_bytes(b"my own notes, not MNIST")
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "pyflux-mnist").symlink_to(mine)
    result = CliRunner().invoke(cli, ["train", "--steps", "1", "--offline"])
    assert result.exit_code == 1
    assert "moved it aside to" in result.stderr and f"{LABELS}.gz.corrupt" in result.stderr
    assert (mine / f"{LABELS}.gz.corrupt").read_bytes() == b"my own notes, not MNIST"


# --- item 8: the repair race ------------------------------------------------------------------------


def test_repair_never_removes_a_file_another_process_just_wrote(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 8: while this process reads a corrupt cache file, another one renames a good download into
    place. Main then deleted the good file. Now only the exact file verified bad is moved aside, and the
    good one is read."""
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = _linked_copy(mnist_dir, tmp_path / "xdg" / "pyflux-mnist", skip=LABELS)
    target = cache / f"{LABELS}.gz"
    target.write_bytes(b"<html>503</html>")
    good = tmp_path / "download.tmp"
    good.write_bytes((mnist_dir / f"{LABELS}.gz").read_bytes())
    real_reader = mnist_module.read_idx_hashed

    def reader_racing_a_download(path: Path):
        try:
            return real_reader(path)  # reads (and fails on) the corrupt file...
        finally:
            if Path(path) == target and good.exists():
                os.replace(good, target)  # ...while the other process's verified copy lands

    monkeypatch.setattr(mnist_module, "read_idx_hashed", reader_racing_a_download)
    data = load_mnist(offline=True)
    assert data.verified and len(data.test_labels) == 10000
    assert target.read_bytes() == (mnist_dir / f"{LABELS}.gz").read_bytes()
    assert not (cache / f"{LABELS}.gz.corrupt").exists()


def test_move_aside_puts_back_a_file_swapped_in_after_the_check(tmp_path: Path) -> None:
    """Item 8, the narrower window: the file is replaced between the check and the move."""
    bad = tmp_path / "f.gz"
    bad.write_bytes(b"bad")
    identity = mnist_module._identity(bad)
    new = tmp_path / "new"
    new.write_bytes(b"good, from another process")
    os.replace(new, bad)
    assert mnist_module._move_aside(bad, identity) is None
    assert bad.read_bytes() == b"good, from another process"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.gz"]


# --- item 15: environment variables and names -----------------------------------------------------------


@pytest.mark.parametrize("value", ["on", "y", "ON", " t "])
def test_offline_accepts_the_usual_spellings(value: str, tmp_path: Path, monkeypatch) -> None:
    """Item 15: main stayed online for PYFLUX_MNIST_OFFLINE=on or y."""
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("PYFLUX_MNIST_MIRRORS", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("PYFLUX_MNIST_OFFLINE", value)
    with pytest.raises(DataError, match="offline"):
        load_mnist()


@pytest.mark.parametrize("value", ["2", "maybe", "yes please"])
def test_offline_refuses_other_values(value: str, monkeypatch) -> None:
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("PYFLUX_MNIST_OFFLINE", value)
    with pytest.raises(PyfluxError, match=f"PYFLUX_MNIST_OFFLINE='{value}' is neither yes nor no"):
        load_mnist()


def test_data_dir_that_is_a_file_says_not_a_directory(monkeypatch) -> None:
    """Item 15: PYFLUX_MNIST_DATA=/dev/null said "does not exist"."""
    monkeypatch.setenv("PYFLUX_MNIST_DATA", "/dev/null")
    with pytest.raises(DataError, match="is a character device, not a directory"):
        load_mnist()


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    """Item 15: a newline in a file name broke the one-line error (and could forge a second line)."""
    name = str(tmp_path / "a\nError: forged\x1b[31m.npz")
    result = CliRunner().invoke(cli, ["evaluate", name])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "a\\nError: forged\\x1b[31m.npz" in lines[0], result.stderr


# --- issue 12 item 5: `data download` --------------------------------------------------------------------


def test_download_with_a_valid_data_folder_fetches_nothing(mnist_dir: Path, monkeypatch) -> None:
    """Main went to the network with a complete $PYFLUX_MNIST_DATA (then suggested setting it)."""
    with LocalMirror() as mirror:
        _online(monkeypatch, mirror.url("m"))
        monkeypatch.setenv("PYFLUX_MNIST_DATA", str(mnist_dir))
        result = CliRunner().invoke(cli, ["data", "download"])
        assert sum(mirror.hits.values()) == 0
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(mnist_dir)


def test_failed_download_leaves_no_folder_and_names_every_missing_file(tmp_path: Path, monkeypatch) -> None:
    """Main left the new (empty) folder behind and named only the first file."""
    with LocalMirror() as mirror:  # every file: 404
        _online(monkeypatch, mirror.url("none"))
        target = tmp_path / "new" / "mnist"
        result = CliRunner().invoke(cli, ["data", "download", "--data-dir", str(target)])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: could not download")
    for name in FILES:
        assert f"{name}[.gz]" in line, line
    assert not (tmp_path / "new").exists()
    # A folder that was there before is kept (empty or not).
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError), LocalMirror() as mirror:
        _online(monkeypatch, mirror.url("none"))
        download_mnist(tmp_path / "mine", progress=False)
    assert (tmp_path / "mine").is_dir()


def test_mirrors_variable_is_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "PYFLUX_MNIST_MIRRORS" in readme


def test_download_caps_do_not_refuse_the_real_files(mnist_dir: Path) -> None:
    for name in FILES:
        assert (mnist_dir / f"{name}.gz").stat().st_size <= mnist_module.max_download_bytes(FILES[name])
    assert np.all([mnist_module.max_download_bytes(f) > f.size for f in FILES.values()])


# --- issue 19, item 7: one deadline over the whole exchange ---------------------------------------------


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection by calling ``talk(sock)`` until the client
    hangs up: for exchanges no HTTP library would send (a dripped status line, endless ``100 Continue``)."""

    def __init__(self, talk) -> None:
        import socket

        self.talk = talk
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:
        with conn:
            conn.recv(65536)  # the request
            try:
                for piece in self.talk():
                    if self.closing.is_set():
                        return
                    conn.sendall(piece)
                    self.sent += len(piece)
                    time.sleep(0.05)
            except OSError:  # the client hung up: what we want
                return

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/m"

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


def _drip_headers():
    for byte in b"HTTP/1.1 200 OK\r\n":
        yield bytes([byte])
    while True:  # headers, one byte at a time, never ending (each read gets a byte: no timeout trips)
        for byte in b"X-Pad: aaaaaaaaaaaaaaaa\r\n":
            yield bytes([byte])


def _endless_continue():
    while True:
        yield b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("talk", [_drip_headers, _endless_continue], ids=["dripped-headers", "100-continue"])
def test_the_deadline_covers_status_line_and_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, talk
) -> None:
    """Issue 19, item 7: a mirror that drips its status line and headers, or answers `100 Continue` for
    ever, was never cut off (the deadline was checked between body reads only; each header byte resets
    the per-read timeout). Now one wall-clock deadline (shortened here from 600 s) covers the whole
    exchange, and the mirror's line says so."""
    monkeypatch.setattr(mnist_module, "DEADLINE_S", 1.5)
    server = RawServer(talk)
    try:
        _online(monkeypatch, server.url())
        error = _within(30, download, LABELS, tmp_path, progress=False)
    finally:
        server.close()
    assert isinstance(error, DataError), error
    assert "took longer than 2 s; giving up on this mirror" in capsys.readouterr().err
    assert server.sent > 0 and list(tmp_path.iterdir()) == []
