"""Reliability, round two (issue 16): hostile model and checkpoint files, and paths that are not files.

Each test names the issue item it covers. The memory cases run the real CLI in a subprocess under
``resource.setrlimit(RLIMIT_AS)``; the hang cases run it with a timeout.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from subset import Subset

from pyflux_mnist.checkpoint import Checkpoint, check_same_data, load_checkpoint, save_checkpoint
from pyflux_mnist.errors import ModelFileError, PyfluxError
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe
from pyflux_mnist.training import train

REPO = Path(__file__).resolve().parent.parent
TINY = get_recipe("flux-tutorial").replace(model={"sizes": (784, 4, 10)})


def cli(*args: str, limit_bytes: int | None = None, timeout: float = 120, **env: str):
    """The real command in a subprocess (optionally under an address-space limit)."""
    code = "import sys\n"
    if limit_bytes:
        code += f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    code += "from pyflux_mnist.cli import main; sys.exit(main(sys.argv[1:]))\n"
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(r: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return Subset(mnist, 1000, 200)


def tiny_model(path: Path, largest: float | None = None, **meta: object) -> Path:
    """A 784-4-10 model; ``largest``: scale each weight matrix so its largest magnitude is that."""
    params = init_params(TINY.model, TINY.init, np.random.default_rng(0))
    if largest is not None:
        params = [
            (p.astype(np.float64) * (largest / float(np.abs(p).max()))).astype(np.float32)
            if p.ndim == 2
            else p
            for p in params
        ]
    return Model(TINY, params, {"backend": "numpy", **meta}).save(path)


def digit_png(path: Path, mnist) -> Path:
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(path)  # dark ink on white
    return path


# --- item 1: compressed weights bomb ----------------------------------------------------------------


def _weight_bomb(path: Path, sizes: tuple[int, ...]) -> Path:
    """A model file whose deflated all-zero weights declare ``sizes`` (1 GiB per 16384x16384 layer, ~5 MB
    of file each)."""
    good = tiny_model(path.with_name("good.npz"))
    with zipfile.ZipFile(good) as z:
        meta = json.loads(str(np.load(z.open("meta.npy"))))
    meta["recipe"]["model"]["sizes"] = list(sizes)
    meta["recipe"]["model"]["activations"] = ["relu"] * (len(sizes) - 2) + ["identity"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        buf = io.BytesIO()
        np.save(buf, np.array(json.dumps(meta)))
        z.writestr("meta.npy", buf.getvalue())
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            for name, shape in ((f"W{i + 1}", (n_out, n_in)), (f"b{i + 1}", (n_out,))):
                header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array_header_1_0(f, header)
                    left = int(np.prod(shape)) * 4
                    zeros = bytes(1 << 20)
                    while left:
                        f.write(zeros[: min(left, len(zeros))])
                        left -= min(left, len(zeros))
    return path


def test_weight_bomb_is_refused_before_reading(tmp_path: Path) -> None:
    """Item 1: 784-16384-16384-10 (1 GiB of W2 in ~5 MB of file) under a 1 GiB address-space limit: main
    allocated it (MemoryError traceback); now the recipe's parameter count is refused from the metadata."""
    bomb = _weight_bomb(tmp_path / "bomb.npz", (784, 16384, 16384, 10))
    assert bomb.stat().st_size < 16 << 20
    for command in (["show", "weights", str(bomb), "-o", str(tmp_path / "w.png")], ["evaluate", str(bomb)]):
        r = cli(*command, limit_bytes=1 << 30)
        line = one_error_line(r, "bomb.npz")
        assert "bytes in all" in line or "parameters" in line, line
    assert not (tmp_path / "w.png").exists()


def test_total_declared_size_is_bounded(tmp_path: Path) -> None:
    """Item 1: the zip directory's declared sizes, summed, are checked before any entry is read."""
    import pyflux_mnist.safe_npz as model_module

    path = tiny_model(tmp_path / "m.npz")
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    old = model_module.MAX_TOTAL_BYTES
    try:
        model_module.MAX_TOTAL_BYTES = total - 1  # the same check at a scale a test can afford
        with pytest.raises(ModelFileError, match=r"declare .* bytes in all"):
            load_model(path)
    finally:
        model_module.MAX_TOTAL_BYTES = old
    load_model(path)


# --- item 2: FIFOs and other non-regular files ------------------------------------------------------


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 2: every command that reads a model, checkpoint or saved result, given a FIFO; main blocked in
    open() forever."""
    fifo = tmp_path / "f.npz"
    os.mkfifo(fifo)
    png = tmp_path / "digit.png"
    Image.new("L", (28, 28), 255).save(png)
    commands = [
        ["evaluate", str(fifo), "--data-dir", str(mnist_dir)],
        ["train", "--resume", str(fifo), "--data-dir", str(mnist_dir)],
        ["predict", str(fifo), str(png)],
        ["show", "weights", str(fifo), "-o", str(tmp_path / "w.png")],
        ["backquery", str(fifo), "-o", str(tmp_path / "b.png")],
        ["bench", "--from-json", str(fifo)],
    ]
    for command in commands:
        try:
            r = cli(*command, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command[0]} waited on the FIFO")
        one_error_line(r, str(fifo), "FIFO")


def test_a_device_is_refused(tmp_path: Path) -> None:
    """Item 2: /dev/zero would stream forever; refused from fstat."""
    with pytest.raises(ModelFileError, match="character device"):
        load_model("/dev/zero")


# --- item 11: finite but huge weights ----------------------------------------------------------------


def test_huge_weights_give_one_line_not_nan(tmp_path: Path, mnist) -> None:
    """Item 11: 3e38 weights overflow float32; main printed NaN probabilities (and `NaN` in --json)."""
    model = tiny_model(tmp_path / "huge.npz", largest=3e38)  # finite float32, as a loader checks
    png = digit_png(tmp_path / "digit.png", mnist)
    r = cli("predict", "--json", str(model), str(png))
    one_error_line(r, "not finite")
    assert "NaN" not in r.stdout
    if r.stdout.strip():
        json.loads(r.stdout)
    with pytest.raises(ModelFileError, match="not finite"):
        load_model(model).predict(mnist.test_images[:5])


# --- item 12: duplicate entries and hostile metadata --------------------------------------------------


def test_duplicate_entries_are_refused(tmp_path: Path) -> None:
    """Item 12: a second W1.npy used to win silently."""
    good = tiny_model(tmp_path / "good.npz")
    dup = tmp_path / "dup.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(dup, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            out.writestr("W1.npy", src.read("W1.npy"))
    with pytest.raises(ModelFileError, match=r"entry W1\.npy appears more than once"):
        load_model(dup)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backend", "numpy\nError: forged", "not a short printable string"),
        ("backend", "\x1b[31mred", "not a short printable string"),
        ("backend", {"a": 1}, "must be a string"),
        ("test_accuracy", "0.99", "must be a number"),
        ("seed", 1.5, "must be an integer"),
    ],
)
def test_metadata_fields_are_typed(tmp_path: Path, field: str, value: object, message: str) -> None:
    """Item 12: every known metadata field must have its type; strings must be printable."""
    path = tiny_model(tmp_path / "m.npz", **{field: value})
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_recipe_name_must_be_a_printable_string(tmp_path: Path) -> None:
    """Item 12: a dict (or a string with a newline) as the recipe name."""
    for name in ({"a": 1}, "flux\nError: forged", ""):
        path = tiny_model(tmp_path / "m.npz")
        with zipfile.ZipFile(path) as z:
            entries = {n: z.read(n) for n in z.namelist()}
            meta = json.loads(str(np.load(z.open("meta.npy"))))
        meta["recipe"]["name"] = name
        buf = io.BytesIO()
        np.save(buf, np.array(json.dumps(meta)))
        entries["meta.npy"] = buf.getvalue()
        with zipfile.ZipFile(path, "w") as z:
            for n, blob in entries.items():
                z.writestr(n, blob)
        with pytest.raises(ModelFileError, match="recipe name must be a printable string") as info:
            load_model(path)
        assert "\n" not in str(info.value)


# --- item 13: resume names the checkpoint and fingerprints the images -------------------------------


class _Inverted:
    """The same labels, the images inverted (255 - x)."""

    def __init__(self, data) -> None:
        self.train_images, self.train_labels = 255 - data.train_images, data.train_labels
        self.test_images, self.test_labels = data.test_images, data.test_labels


def test_resume_errors_name_the_path_and_images_are_fingerprinted(tmp_path: Path, small_mnist) -> None:
    """Item 13: main said "checkpoint  is for a 50-step run" (no path) and accepted inverted images."""
    r = TINY.replace(steps=4)
    ck_path = tmp_path / "run.ckpt.npz"
    train(r, "numpy", small_mnist, 0, checkpoint=ck_path, checkpoint_every=2)
    ck = load_checkpoint(ck_path)
    with pytest.raises(PyfluxError, match=re.escape(f"checkpoint {ck_path} is for a 4-step run")):
        check_same_data(ck, 50, ck.data_fingerprint)
    ck.losses = ck.losses[:2]
    ck.optimizer_state["t"] = np.int64(2)
    save_checkpoint(ck_path, ck)
    with pytest.raises(PyfluxError, match=re.escape(f"checkpoint {ck_path} was trained on other images")):
        train(backend="numpy", data=_Inverted(small_mnist), resume=load_checkpoint(ck_path))
    result = train(backend="numpy", data=small_mnist, resume=ck_path)  # the same data still resumes
    assert len(result.losses) == 4


def test_checkpoints_without_an_image_fingerprint_still_resume(tmp_path: Path, small_mnist) -> None:
    """Item 13: a checkpoint written before this change (labels only) resumes on its labels."""
    r = TINY.replace(steps=4)
    ck_path = tmp_path / "old.ckpt.npz"
    train(r, "numpy", small_mnist, 0, checkpoint=ck_path, checkpoint_every=2)
    ck = load_checkpoint(ck_path)
    old = Checkpoint(**{**ck.__dict__, "data_fingerprint": ck.data_fingerprint.rsplit(":img", 1)[0]})
    old.losses, old.optimizer_state["t"] = old.losses[:2], np.int64(2)
    save_checkpoint(ck_path, old)
    assert len(train(backend="numpy", data=small_mnist, resume=ck_path).losses) == 4
