"""Saving onto a full disk or a read-only folder: one clear line, the previous file intact, no debris.

The real faults need a tiny tmpfs (``mount -t tmpfs -o size=...``), which only root can mount; without it
those tests skip with the reason and the simulated ENOSPC test (the low-level ``write`` fails) still runs.
A read-only folder is a read-only mount when root (root ignores ``chmod``), else a ``chmod 0o500`` folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pyflux_mnist import atomic
from pyflux_mnist.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from pyflux_mnist.cli import cli
from pyflux_mnist.errors import ModelFileError
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe


@pytest.fixture
def model() -> Model:
    r = get_recipe("flux-tutorial")
    return Model(r, init_params(r.model, r.init, np.random.default_rng(0)), {"backend": "numpy"})


@pytest.fixture
def checkpoint(model: Model) -> Checkpoint:
    state = {"t": np.array(3)} | {
        f"{s}/{i}": np.zeros_like(p) for s in "mv" for i, p in enumerate(model.params)
    }
    return Checkpoint(model.recipe, model.params, state, np.ones(3), 0, "numpy", 10, "600:abc", 1)


@contextlib.contextmanager
def _tmpfs(path: Path, size: int, readonly: bool = False):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the filesystem until about ``leave`` bytes remain free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > leave:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
            f.write(b"\0" * (free - leave))


def _save_twice_on_full_disk(mount: Path, save, load, first) -> None:
    path = mount / "out.npz"
    save(path, first)
    before = path.read_bytes()
    _fill(mount, leave=len(before) // 2)  # room for half a new file
    with pytest.raises(ModelFileError, match="No space left on device") as info:
        save(path, first)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == before  # the previous file is intact and still loads
    load(path)
    assert sorted(p.name for p in mount.iterdir()) == ["filler", "out.npz"]  # no temporary file left


def test_model_save_on_a_full_disk(model: Model, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", 1 << 20) as mount:
        _save_twice_on_full_disk(mount, lambda p, m: m.save(p), load_model, model)


def test_checkpoint_save_on_a_full_disk(checkpoint: Checkpoint, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", 1 << 20) as mount:
        _save_twice_on_full_disk(mount, save_checkpoint, load_checkpoint, checkpoint)


def test_simulated_enospc_in_the_low_level_write(model: Model, tmp_path: Path, monkeypatch) -> None:
    """Works anywhere: the file object's write fails with ENOSPC after 10 kB, as a full disk would."""
    path = model.save(tmp_path / "m.npz")
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data) -> int:
            self.written += len(data)
            if self.written > 10_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(ModelFileError, match="No space left on device"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.fixture
def readonly_dir(tmp_path: Path):
    """A folder nobody can write: a read-only mount for root, else chmod 0o500."""
    folder = tmp_path / "ro"
    if os.geteuid() == 0:
        with _tmpfs(folder, 1 << 20) as mount:
            (mount / "old.npz").write_bytes(b"previous")
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            yield mount
        return
    folder.mkdir()
    (folder / "old.npz").write_bytes(b"previous")
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


def test_save_into_a_read_only_folder(model: Model, checkpoint: Checkpoint, readonly_dir: Path) -> None:
    for save in (model.save, lambda p: save_checkpoint(p, checkpoint)):
        with pytest.raises(
            ModelFileError, match=r"cannot save the (model|checkpoint) to .*old\.npz: "
        ) as info:
            save(readonly_dir / "old.npz")
        assert "\n" not in str(info.value)
    assert (readonly_dir / "old.npz").read_bytes() == b"previous"
    assert [p.name for p in readonly_dir.iterdir()] == ["old.npz"]


@pytest.mark.parametrize("option", ["--save", "--checkpoint", "--plot"])
def test_cli_refuses_a_read_only_output_before_training(readonly_dir: Path, option: str, monkeypatch) -> None:
    import pyflux_mnist.mnist as mnist_module

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the output folder was checked")

    monkeypatch.setattr(mnist_module, "load_mnist", no_data)
    result = CliRunner().invoke(cli, ["train", option, str(readonly_dir / "out.npz")], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot write the {option[2:].replace('save', 'model')} to " + (
        f"{readonly_dir / 'out.npz'}: folder {readonly_dir} is not writable"
    )


def test_cli_save_on_a_full_disk_after_training(mnist_dir: Path, tmp_path: Path) -> None:
    """The disk fills up while training: the save fails with one line and the old model survives."""
    with _tmpfs(tmp_path / "small", 1 << 20) as mount:
        old = mount / "m.npz"
        old.write_bytes(b"previous model")
        _fill(mount, leave=8192)
        args = ["train", "--steps", "1", "--hidden", "8", "--data-dir", str(mnist_dir), "--save", str(old)]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 1
        assert result.output.strip().splitlines()[-1] == (
            f"Error: cannot save the model to {old}: No space left on device"
        )
        assert old.read_bytes() == b"previous model"
        assert sorted(p.name for p in mount.iterdir()) == ["filler", "m.npz"]
