"""Reliability, round three (issue 19), files and outputs: outputs onto device nodes, FIFOs and symbolic
links (item 3), npz alias entries (4), the loss-curve sidecar (6), the stale-temporary sweep (8),
non-finite metadata (13), and the minor ones (a path under a file, a 254-byte image name for
``--save-preprocessed``, back-query on overflowing weights). Every hostile file is built here, in
``tmp_path``; nothing outside it is created, replaced or removed."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_red_team_cli import one_error_line

from pyflux_mnist.atomic import atomic_write, output_target, sweep_stale_temporaries
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import ModelFileError
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe
from pyflux_mnist.safe_npz import MAX_ENTRIES
from pyflux_mnist.userpaths import UserPathError

REPO = Path(__file__).resolve().parent.parent
TINY = get_recipe("flux-tutorial").replace(model={"sizes": (784, 4, 10)})
ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYFLUX_MNIST_JULIA": "0"}
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="creating a character device node (os.mknod) needs root")


def tiny_model(path: Path, scale: float | None = None, **meta: object) -> Path:
    params = init_params(TINY.model, TINY.init, np.random.default_rng(0))
    if scale is not None:
        params = [np.full_like(p, scale) for p in params]
    return Model(TINY, params, {"backend": "numpy", **meta}).save(path)


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess (stderr exactly as a shell sees it)."""
    return subprocess.run(
        [sys.executable, "-m", "pyflux_mnist", *args],
        cwd=REPO, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def char_device(path: Path) -> Path:
    """A character device node like /dev/null (1, 3), but our own, in tmp_path."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    kinds = {stat.S_ISCHR: "chr", stat.S_ISFIFO: "fifo", stat.S_ISLNK: "link", stat.S_ISREG: "file"}
    return next((name for test, name in kinds.items() if test(mode)), "other")


# --- item 3: outputs never replace what is not a regular file ------------------------------------------


@needs_root
def test_save_onto_a_device_node_is_refused_and_the_node_stays(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 3: as root, `train --save NODE` replaced the device node with a regular file (so `--save
    /dev/null` would have replaced /dev/null). Now: one line, before the data is read; the node stays."""
    node = char_device(tmp_path / "null")
    r = run("train", "--steps", "1", "--save", str(node), "--data-dir", str(mnist_dir), "--offline")
    one_error_line(r, str(node), "is a character device, not a regular file; refusing to replace it")
    assert kind(node) == "chr"
    with pytest.raises(UserPathError, match="character device"):  # the library's own save, too
        tiny_model(node)
    assert kind(node) == "chr"


def test_fifo_outputs_are_refused_and_stay(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 3: a FIFO as `--confusion`, `--errors` or `backquery -o` was replaced by the picture."""
    model = tiny_model(tmp_path / "m.npz")
    for option in ("--confusion", "--errors"):
        fifo = tmp_path / f"{option[2:]}.png"
        os.mkfifo(fifo)
        r = run("evaluate", str(model), option, str(fifo), "--data-dir", str(mnist_dir), "--offline")
        one_error_line(r, str(fifo), "is a FIFO (named pipe), not a regular file")
        assert kind(fifo) == "fifo"
    fifo = tmp_path / "bq.png"
    os.mkfifo(fifo)
    one_error_line(run("backquery", str(model), "--method", "optimise", "-o", str(fifo)), "FIFO")
    assert kind(fifo) == "fifo"


def test_a_symlink_is_written_through_atomically_and_said(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 3: `--output`/`--markdown` onto a symbolic link replaced the link itself with a file. Decided:
    a link to a regular file is written *through* (that file replaced atomically, the link kept), and the
    command says so; a link to a special file, or to nothing, is refused."""
    real = tmp_path / "runs" / "model-3.npz"
    real.parent.mkdir()
    real.write_bytes(b"the old model")
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    r = run(
        "train", "--recipe", "numpy-twolayer", "--hidden", "4", "--steps", "1", "--save", str(link),
        "--data-dir", str(mnist_dir), "--offline",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (
        f"note: {link} is a symbolic link; the model will replace the file it points to: {real}" in r.stderr
    )
    assert kind(link) == "link" and os.readlink(link) == str(real)
    assert load_model(real).spec.sizes == (784, 4, 10)
    assert not [p for p in real.parent.iterdir() if p.name.endswith(".tmp")]
    # The library-level mechanism every output uses: the same rules.
    with atomic_write(link) as f:
        f.write(b"through")
    assert kind(link) == "link" and real.read_bytes() == b"through"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere" / "x.json")
    with pytest.raises(UserPathError, match="which does not exist; refusing to write through it"):
        output_target(dangling)
    fifo_link = tmp_path / "fifo-link.md"
    os.mkfifo(tmp_path / "fifo")
    fifo_link.symlink_to(tmp_path / "fifo")
    with pytest.raises(UserPathError, match="which is a FIFO"):
        output_target(fifo_link)
    assert kind(tmp_path / "fifo") == "fifo"


@needs_root
def test_bench_outputs_onto_a_link_to_a_device_are_refused_before_any_work(tmp_path: Path) -> None:
    """Item 3: `bench --output`/`--markdown` onto a link replaced it; a link to a device is refused up
    front (the data folder does not even exist: nothing ran)."""
    node = char_device(tmp_path / "node")
    link = tmp_path / "result.json"
    link.symlink_to(node)
    for option in ("--output", "--markdown"):
        r = run("bench", "--backends", "numpy", option, str(link), "--data-dir", str(tmp_path / "none"))
        one_error_line(r, str(link), "is a symbolic link to", "which is a character device")
        assert kind(link) == "link" and kind(node) == "chr"


def test_save_preprocessed_never_replaces_a_fifo(tmp_path: Path, mnist) -> None:
    """Item 3: `predict --save-preprocessed` wrote with Pillow's own `save` (not atomic; with a FIFO as
    the strip's name it saved the digit, then failed with "File or stream is not seekable"). Now every
    output goes through the one mechanism: both names refused up front, the FIFO stays."""
    model = tiny_model(tmp_path / "m.npz")
    png = tmp_path / "seven.png"
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(png)
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "seven-strip.png")
    r = run("predict", str(model), str(png), "--save-preprocessed", str(out), timeout=120)
    assert r.stdout.startswith(f"{png}: "), r.stdout
    assert not (out / "seven.png").exists()  # both names are checked before either is written
    one_error_line(r, str(out / "seven-strip.png"), "FIFO")
    assert kind(out / "seven-strip.png") == "fifo"


# --- item 4: npz alias entries -------------------------------------------------------------------------


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def _with_extra(src: Path, dst: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(name, data)
    return dst


def test_an_alias_entry_never_wins(tmp_path: Path) -> None:
    """Item 4: `W1` beside `W1.npy` is the same name to NumPy, and the unchecked one won: the model ran on
    zeroed weights while its card claimed its accuracy. Now only `NAME.npy` entries exist for us."""
    good = tiny_model(tmp_path / "good.npz", test_accuracy=0.95)
    zeros = _with_extra(good, tmp_path / "alias.npz", "W1", _npy(np.zeros((4, 784), np.float32)))
    with pytest.raises(ModelFileError, match=r"entry 'W1' is not a \.npy array; refusing to guess"):
        load_model(zeros)


def test_raw_bytes_entry_is_one_line(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 4: raw bytes under an alias name gave an AttributeError traceback (evaluate, serve, resume)."""
    good = tiny_model(tmp_path / "good.npz")
    raw = _with_extra(good, tmp_path / "raw.npz", "W1", b"not an array at all")
    one_error_line(
        run("evaluate", str(raw), "--data-dir", str(mnist_dir), "--offline"), "is not a .npy array"
    )


def test_many_entries_are_refused_first_in_one_short_line(tmp_path: Path) -> None:
    """Item 4: the duplicate check was O(n^2) (40,000 empty entries took 26 s) and its line listed them
    all. Now the count in the zip's end record is checked before the directory is even parsed."""
    many = tmp_path / "many.npz"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(40_000):
            z.writestr(f"e{i}.npy", b"")
    with pytest.raises(ModelFileError) as err:
        load_model(many)
    line = str(err.value)
    assert "40,000 entries" in line and f"at most {MAX_ENTRIES}" in line and len(line) < 300, line


# --- item 6: the loss-curve sidecar --------------------------------------------------------------------


def _loaded_within(path: Path, seconds: float = 60):
    """``file_loaded(path)`` in a thread (a FIFO would block it for ever on the old code)."""
    from pyflux_mnist.web.state import file_loaded

    box: list = []
    t = threading.Thread(target=lambda: box.append(file_loaded(path)), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "still reading the sidecar"
    assert box, "file_loaded raised"
    return box[0]


def test_the_sidecar_is_read_through_the_safe_container(tmp_path: Path, capsys) -> None:
    """Item 6: `MODEL.losses.npz` was read with a bare np.load: a FIFO hung `serve` at start, a damaged one
    gave a traceback, a deflated one took gigabytes. Now any failure is "no loss curve", said once."""
    from pyflux_mnist.web.state import losses_path

    model = tiny_model(tmp_path / "m.npz")
    sidecar = losses_path(model)
    os.mkfifo(sidecar)
    assert _loaded_within(model).losses is None
    err = capsys.readouterr().err
    assert err.count("no loss curve") == 1 and "FIFO" in err, err
    sidecar.unlink()
    np.savez(sidecar, losses=np.arange(5.0), epoch_steps=np.int64(0))
    sidecar.write_bytes(sidecar.read_bytes()[:-30])  # damaged: the zip directory cut short
    assert _loaded_within(model).losses is None
    assert capsys.readouterr().err.count("no loss curve") == 1
    # A deflated bomb: 200 MB of float64 zeros in a few hundred kB (more than any run's 10 M steps).
    with zipfile.ZipFile(sidecar, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("epoch_steps.npy", _npy(np.int64(0)))
        with z.open("losses.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (25_000_000,)}
            )
            zeros = bytes(1 << 20)
            for _ in range(200_000_000 // len(zeros)):
                f.write(zeros)
    assert sidecar.stat().st_size < 1 << 20
    assert _loaded_within(model).losses is None
    assert "implausibly large" in capsys.readouterr().err
    # An alias entry, as in item 4.
    with zipfile.ZipFile(sidecar, "w") as z:
        z.writestr("losses.npy", _npy(np.arange(3.0)))
        z.writestr("epoch_steps.npy", _npy(np.int64(0)))
        z.writestr("losses", _npy(np.full(3, 9.0)))
    assert _loaded_within(model).losses is None


def test_a_good_sidecar_still_gives_the_curve(tmp_path: Path, capsys) -> None:
    from pyflux_mnist.web.state import file_loaded, losses_path

    model = tiny_model(tmp_path / "m.npz")
    with atomic_write(losses_path(model)) as f:
        np.savez(f, losses=np.linspace(2.3, 0.1, 50), epoch_steps=np.int64(10))
    loaded = file_loaded(model)
    assert np.array_equal(loaded.losses, np.linspace(2.3, 0.1, 50)) and loaded.epoch_steps == 10
    assert capsys.readouterr().err == ""


# --- item 8: the stale-temporary sweep -----------------------------------------------------------------


def test_the_sweep_touches_only_the_targets_own_temporaries(tmp_path: Path) -> None:
    """Item 8: `.thesis.2024.chapter3.tmp` (2 days old) and `.backup.99999.abcdefgh.tmp` beside a --save
    target were deleted. Now a save removes only its own target's temporaries, marked as ours."""
    target = tmp_path / "model.npz"
    two_days = time.time() - 2 * 24 * 3600
    users = [
        tmp_path / ".thesis.2024.chapter3.tmp",
        tmp_path / ".backup.99999.abcdefgh.tmp",
        tmp_path / ".model.npz.99999.abcdefgh.tmp",  # our old naming, but without the marker
        tmp_path / ".other.npz.pyflux-tmp.99999.abcdefgh.tmp",  # ours, but another target's
    ]
    ours = tmp_path / ".model.npz.pyflux-tmp.99999.abcdefgh.tmp"
    for p in [*users, ours]:
        p.write_bytes(b"keep me")
        os.utime(p, (two_days, two_days))
    tiny_model(target)
    assert all(p.read_bytes() == b"keep me" for p in users)
    assert not ours.exists()
    assert sweep_stale_temporaries(tmp_path / "other.npz") == [users[-1]]


def test_the_download_uses_the_same_sweep(tmp_path: Path) -> None:
    """Issue 22: the sweep existed twice (atomic.py and a download's own glob `.NAME.*.tmp`, which would
    also take a user's `.NAME.notes.tmp`). Now a download sweeps through atomic_write only."""
    import pyflux_mnist.mnist as mnist_module

    assert not hasattr(mnist_module, "_remove_stale_temporaries")
    name = "t10k-labels-idx1-ubyte.gz"
    mine = tmp_path / f".{name}.notes.tmp"
    mine.write_bytes(b"keep me")
    old = time.time() - 2 * 24 * 3600
    os.utime(mine, (old, old))
    with atomic_write(tmp_path / name) as f:
        f.write(b"x")
    assert mine.read_bytes() == b"keep me"


# --- item 13: non-finite metadata ----------------------------------------------------------------------


def _with_meta(src: Path, dst: Path, text: str) -> Path:
    """``src`` with its meta JSON replaced by ``text`` (which may hold NaN: written as raw JSON)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = _npy(np.array(text)) if info.filename == "meta.npy" else zin.read(info)
            zout.writestr(info.filename, data)
    return dst


@pytest.mark.parametrize(
    ("field", "raw", "words"),
    [
        ("test_accuracy", "NaN", "holds NaN, not a finite number"),
        ("final_loss", "Infinity", "holds Infinity, not a finite number"),
        ("final_loss", "1e999", "holds 1e999, not a finite number"),
        ("train_accuracy", "1.5", "'train_accuracy' must be 0..1"),
        ("final_loss", "-2.0", "'final_loss' must be a finite number >= 0"),
    ],
)
def test_non_finite_or_out_of_range_metadata_is_refused(
    tmp_path: Path, mnist_dir: Path, field: str, raw: str, words: str
) -> None:
    """Item 13: a model whose metadata said `test_accuracy: NaN` loaded, and `/api/model` then answered
    500 for good. Now such a file is refused at load, in one line (evaluate and serve alike)."""
    good = tiny_model(tmp_path / "good.npz", test_accuracy=0.9, train_accuracy=0.9, final_loss=0.3)
    meta = json.loads(str(np.load(good)["meta"]))
    text = json.dumps(meta).replace(f'"{field}": {meta[field]}', f'"{field}": {raw}')
    assert raw in text
    bad = _with_meta(good, tmp_path / "bad.npz", text)
    with pytest.raises(ModelFileError, match=words):
        load_model(bad)
    one_error_line(run("evaluate", str(bad), "--data-dir", str(mnist_dir), "--offline"), words)


def test_serve_refuses_a_nan_model_at_start(tmp_path: Path) -> None:
    """Item 13, the server: the model is loaded before the server starts, so the page never sees it."""
    good = tiny_model(tmp_path / "good.npz", test_accuracy=0.9)
    text = json.dumps(json.loads(str(np.load(good)["meta"]))).replace(
        '"test_accuracy": 0.9', '"test_accuracy": NaN'
    )
    assert '"test_accuracy": NaN' in text
    bad = _with_meta(good, tmp_path / "bad.npz", text)
    r = run("serve", str(bad), "--port", "0", timeout=120)
    one_error_line(r, "holds NaN")


# --- minor ones ----------------------------------------------------------------------------------------


def test_a_folder_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    """Minor: `--save afile/m.npz` where afile is a file said "folder afile does not exist"."""
    (tmp_path / "afile").write_text("a file")
    result = CliRunner().invoke(cli, ["train", "--save", str(tmp_path / "afile" / "m.npz")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'afile'} is not a folder" in result.stderr and "does not exist" not in result.stderr


def test_a_254_byte_image_name_saves_neither_picture(tmp_path: Path, mnist) -> None:
    """Minor: `predict --save-preprocessed` with a 254-byte image name saved the digit, then failed on the
    longer strip name (`NAME-strip.png`, 260 bytes). Now both names are checked first: neither is written,
    one line says why, and the prediction is still printed."""
    model = tiny_model(tmp_path / "m.npz")
    png = tmp_path / ("d" * 250 + ".png")
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(png)
    out = tmp_path / "out"
    r = run("predict", str(model), str(png), "--save-preprocessed", str(out), timeout=120)
    assert r.stdout.startswith(f"{png}: "), r.stdout
    assert list(out.iterdir()) == []
    one_error_line(r, "-strip.png", "longer than 255 bytes")


def test_backquery_on_overflowing_weights_is_the_models_line(tmp_path: Path) -> None:
    """Minor: 3e38 weights gave "float images must hold values in [0, 1] ... nan to nan" and two
    RuntimeWarnings. Now: the model's own overflow line, nothing else."""
    model = tiny_model(tmp_path / "huge.npz", scale=3e38)
    r = run("backquery", str(model), "--method", "optimise", "-o", str(tmp_path / "bq.png"))
    one_error_line(r, "the model's outputs are not finite numbers")
    assert "RuntimeWarning" not in r.stderr and "nan" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "bq.png").exists()


def test_a_non_finite_metadata_number_is_never_written(tmp_path: Path) -> None:
    """Item 13, the other side: what a load refuses is never saved (json wrote `NaN` by default)."""
    target = tmp_path / "m.npz"
    with pytest.raises(ModelFileError, match="its metadata holds NaN or Inf"):
        tiny_model(target, test_accuracy=float("nan"))
    assert list(tmp_path.iterdir()) == []
