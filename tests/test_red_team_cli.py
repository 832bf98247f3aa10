"""Reliability, round two (issue 16): the CLI under SIGTERM, with leftovers, bad paths, long names, memory
limits, a failing bench worker, and as an unprivileged user. Each runs the real command in a subprocess."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pyflux_mnist.atomic import atomic_write, sweep_stale_temporaries
from pyflux_mnist.checkpoint import load_checkpoint
from pyflux_mnist.cli import cli
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe

REPO = Path(__file__).resolve().parent.parent
TINY = get_recipe("flux-tutorial").replace(model={"sizes": (784, 4, 10)})
ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def run(*args: str, limit_bytes: int | None = None, timeout: float = 300, env: dict | None = None, **kw):
    code = "import sys\n"
    if limit_bytes:
        code += f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    code += "from pyflux_mnist.cli import main; sys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [kw.pop("python", sys.executable), "-c", code, *args],
        cwd=kw.pop("cwd", REPO),
        env={**os.environ, **ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def one_error_line(r, *fragments: str, code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def tiny_model(path: Path) -> Path:
    return Model(
        TINY, init_params(TINY.model, TINY.init, np.random.default_rng(0)), {"backend": "numpy"}
    ).save(path)


def digit_png(path: Path, mnist) -> Path:
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(path)
    return path


# --- item 5: bench bounds and failed workers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--steps", "100000000", "--steps must be a positive integer up to 100000"),
        ("--repeat", "5000", "--repeat"),
    ],
)
def test_bench_bounds_steps_and_repeat(option: str, value: str, message: str) -> None:
    """Item 5: main drew every batch up front (+150 MB/s) and ended in a worker traceback, exit 0."""
    result = CliRunner().invoke(
        cli, ["bench", "--backends", "numpy", option, value, "--data-dir", "/nonexistent"]
    )
    assert result.exit_code == 1 and message in result.stderr, result.stderr  # before the data is looked for


def test_a_failed_bench_worker_is_a_non_zero_exit(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 5: a worker that fails (here: a 500 MiB address-space limit imposed on the workers only, by a
    sitecustomize on their PYTHONPATH, so the numpy worker cannot hold the data) made main exit 0."""
    (tmp_path / "sitecustomize.py").write_text(
        "import os, resource, sys\n"
        "if 'pyflux_mnist.bench_worker' in sys.orig_argv:\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (500 << 20, 500 << 20))\n"
    )
    r = run(
        "bench", "--backends", "numpy", "--steps", "1", "--repeat", "1", "--data-dir", str(mnist_dir),
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    line = one_error_line(r, "1 backend(s) failed: numpy")
    assert "MemoryError" in line
    assert "numpy     error" in r.stdout  # the table is still printed


# --- item 7: SIGTERM and leftover temporaries ------------------------------------------------------------


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 7: main died silently on SIGTERM with the checkpoint up to --checkpoint-every steps behind."""
    ck = tmp_path / "run.ckpt.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyflux_mnist", "train", "--recipe", "numpy-twolayer", "--hidden", "16",
         "--steps", "100000", "--checkpoint", str(ck), "--checkpoint-every", "1000000",
         "--data-dir", str(mnist_dir), "--offline", "--json"],
        cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []  # wait for training's first progress line (a fixed sleep was too short on a loaded machine)
    while not any(": step " in line for line in seen):
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: terminated (SIGTERM) after step ") and f"checkpoint saved to {ck}" in last
    assert "Traceback" not in err and out == ""
    done = load_checkpoint(ck).steps_done
    assert 0 < done < 100000 and f"after step {done} of 100000" in last


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path: Path) -> None:
    """Item 7: SIGKILL during a save left `.NAME.*.tmp` for ever; now the next save into the folder sweeps
    ours (dead owner, untouched for a minute), and nothing else."""
    code = (
        "import os, signal, sys\n"
        "from pyflux_mnist.atomic import atomic_write\n"
        "with atomic_write(sys.argv[1]) as f:\n"
        "    f.write(b'half a model')\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    target = tmp_path / "model.npz"
    r = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True)
    assert r.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(".model.npz.") and not target.exists()
    # Not ours (other naming), a live owner's (pid 1), and a fresh one stay; so does anything not .tmp.
    others = [
        tmp_path / ".model.npz.abcdefgh.tmp",
        tmp_path / ".x.npz.1.abcdefgh.tmp",
        tmp_path / "notes.tmp",
    ]
    for p in others:
        p.write_bytes(b"keep")
    old = time.time() - 120
    for p in [left, *others]:
        os.utime(p, (old, old))
    tiny_model(target)
    assert not left.exists() and all(p.exists() for p in others)
    assert load_model(target).spec.sizes == (784, 4, 10)
    assert sweep_stale_temporaries(target) == []


def test_a_live_save_is_never_swept(tmp_path: Path) -> None:
    """Item 7: a temporary being written by a running process (this one) survives another save's sweep."""
    with atomic_write(tmp_path / "a.npz") as f:
        f.write(b"in progress")
        (mine,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        old = time.time() - 3600
        os.utime(mine, (old, old))
        tiny_model(tmp_path / "b.npz")
        assert mine.exists()
    assert (tmp_path / "a.npz").read_bytes() == b"in progress"


# --- item 10: long names -------------------------------------------------------------------------------


def test_a_250_byte_name_saves(tmp_path: Path, mnist_dir: Path) -> None:
    """Item 10: main trained, then failed to write the temporary (name over 255 bytes): model lost."""
    save = tmp_path / ("m" * 246 + ".npz")
    ck = tmp_path / ("c" * 241 + ".ckpt.npz")
    r = run(
        "train", "--recipe", "numpy-twolayer", "--hidden", "8", "--steps", "2", "--save", str(save),
        "--checkpoint", str(ck), "--checkpoint-every", "1", "--data-dir", str(mnist_dir), "--offline",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert load_model(save).spec.sizes == (784, 8, 10) and load_checkpoint(ck).steps_done == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_name_too_long_is_refused_before_training(tmp_path: Path) -> None:
    """Items 9 and 10: a 300-character --save name is one line, before the data is even looked for."""
    save = tmp_path / ("m" * 296 + ".npz")
    result = CliRunner().invoke(cli, ["train", "--save", str(save), "--data-dir", "/nonexistent"])
    assert result.exit_code == 1 and "longer than 255 bytes" in result.stderr, result.stderr


# --- item 9: OS errors on user paths, as root ----------------------------------------------------------


def test_os_errors_on_user_paths_are_one_line(tmp_path: Path) -> None:
    """Item 9: each of these escaped as a traceback on main."""
    nowhere = {
        "PYFLUX_MNIST_MIRRORS": "http://127.0.0.1:9/",
        "PYFLUX_MNIST_OFFLINE": "0",
        "PYFLUX_MNIST_DATA": "",
    }
    dangling = tmp_path / "xdg-dangling"
    dangling.mkdir()
    (dangling / "pyflux-mnist").symlink_to(tmp_path / "gone")
    a_file = tmp_path / "xdg-file"
    a_file.mkdir()
    (a_file / "pyflux-mnist").write_text("not a folder")
    cases = [
        (["data", "download"], {**nowhere, "XDG_CACHE_HOME": str(dangling)}, "pyflux-mnist"),
        (["data", "download"], {**nowhere, "XDG_CACHE_HOME": str(a_file)}, "pyflux-mnist"),
        (["data", "download"], {**nowhere, "XDG_CACHE_HOME": "/dev/null"}, "/dev/null"),
        (["train", "--offline"], {"PYFLUX_MNIST_DATA": "/" + "x" * 5000}, "file name too long"),
        (["train", "--offline", "--data-dir", "~nosuchuser/x"], {}, "~nosuchuser/x"),
        (["data", "info", "--data-dir", "~nosuchuser/x"], {}, "cannot expand"),
    ]
    for args, env, fragment in cases:
        r = run(*args, env=env, timeout=120)
        line = one_error_line(r, fragment)
        assert len(line) < 400 or "x" * 5000 in line, line


def test_hidden_65536_under_a_memory_limit_is_one_line(mnist_dir: Path) -> None:
    """Item 9: `--hidden 65536` needs ~16 GB of activations for a full batch; under a 3 GiB limit main
    ended in a MemoryError traceback."""
    r = run(
        "train", "--hidden", "65536", "--steps", "1", "--data-dir", str(mnist_dir), "--offline",
        limit_bytes=3 << 30,
    )  # fmt: skip
    one_error_line(r, "out of memory")


def test_save_preprocessed_failures_keep_the_predictions(tmp_path: Path, mnist) -> None:
    """Item 9: a digit's output name that is a directory: main lost every prediction to one traceback.
    (A --save-preprocessed that is a file is click's usage error, exit 2, before anything runs.)"""
    model = tiny_model(tmp_path / "m.npz")
    png = digit_png(tmp_path / "seven.png", mnist)
    taken = tmp_path / "out-dir"
    (taken / "seven.png").mkdir(parents=True)  # the digit's file name is a directory
    r = run("predict", str(model), str(png), "--save-preprocessed", str(taken))
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith(f"{png}: "), r.stdout  # the prediction is printed
    one_error_line(r, str(taken / "seven.png"))


def test_an_unreadable_image_name_costs_only_its_own_prediction(tmp_path: Path, mnist) -> None:
    """Item 9: a 300-character image name raised ENAMETOOLONG out of `predict`, losing the other files."""
    model = tiny_model(tmp_path / "m.npz")
    good = digit_png(tmp_path / "seven.png", mnist)
    long_name = str(tmp_path / ("x" * 300 + ".png"))
    r = run("predict", str(model), long_name, str(good))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(long_name) and "file name too long" in lines[0], lines
    assert lines[1].startswith(f"{good}: "), lines


# --- item 9: as an unprivileged user -------------------------------------------------------------------

USER = "pyflux-redteam"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("creating an unprivileged user needs root")
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.skip("no useradd here")
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false", USER], check=True)
    return pwd.getpwnam(USER)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder the unprivileged user can reach (pytest's tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="pyflux-redteam-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_user(user: pwd.struct_passwd, *args: str, env: dict[str, str]):
    """The CLI as ``user``: with this interpreter if the user can run it, else the system's of the same
    version, with this environment's site-packages and the checkout on PYTHONPATH."""
    site = sysconfig.get_paths()["purelib"]
    base = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{REPO}{os.pathsep}{site}",
        "PYFLUX_MNIST_OFFLINE": "1",
        **ENV,
        **env,
    }
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
    for python in candidates:
        try:
            probe = subprocess.run(
                [python, "-c", "import numpy, click, PIL, pyflux_mnist"],
                user=user.pw_uid, group=user.pw_gid, extra_groups=[], env=base, capture_output=True, cwd="/",
            )  # fmt: skip
        except OSError:  # not executable by the user (e.g. under root's 0700 home)
            continue
        if probe.returncode == 0:
            break
    else:
        pytest.skip(f"no Python the user {USER} can run with this environment's packages")
    code = "import sys\nfrom pyflux_mnist.cli import main; sys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [python, "-c", code, *args], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        env=base, capture_output=True, text=True, timeout=300, cwd="/",
    )  # fmt: skip


def test_unprivileged_paths_are_one_line(user, shared: Path, mnist_dir: Path, mnist) -> None:
    """Item 9 as an unprivileged user: an unwritable HOME, a corrupt file in a cache the user cannot write,
    a data folder the user can list but not read, --save-preprocessed into a read-only folder."""
    # HOME that the user cannot write: the cache cannot be created.
    r = as_user(user, "data", "download", env={"HOME": "/", "PYFLUX_MNIST_OFFLINE": "0",
                                               "PYFLUX_MNIST_MIRRORS": "http://127.0.0.1:9/"})  # fmt: skip
    one_error_line(r, "/.cache", "Permission denied")

    # A corrupt file in root's cache: it cannot be moved aside; nothing is lost, one line.
    cache = shared / "xdg" / "pyflux-mnist"
    cache.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(mnist_dir / f"{name}.gz", cache)
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>oops</html>")
    for p in [shared / "xdg", cache, *cache.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    r = as_user(user, "train", "--steps", "1", env={"XDG_CACHE_HOME": str(shared / "xdg")})
    one_error_line(r, "cannot move the bad cache file aside", "Permission denied")
    assert (cache / "train-labels-idx1-ubyte.gz").read_bytes() == b"<html>oops</html>"

    # A data folder the user can list but not read (files 0o600, root's).
    (cache / "train-labels-idx1-ubyte.gz").unlink()
    shutil.copy(mnist_dir / "train-labels-idx1-ubyte.gz", cache)
    for p in cache.iterdir():
        p.chmod(0o600)
    r = as_user(user, "train", "--steps", "1", "--data-dir", str(cache), env={})
    one_error_line(r, str(cache), "Permission denied")
    cache.chmod(0o744)  # readable names, no search permission
    r = as_user(user, "data", "info", "--data-dir", str(cache), env={})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr

    # --save-preprocessed into a folder the user cannot write: predictions kept, one error line.
    model = tiny_model(shared / "m.npz")
    png = digit_png(shared / "seven.png", mnist)
    readonly = shared / "ro"
    readonly.mkdir()
    for p in (model, png):
        p.chmod(0o644)
    readonly.chmod(0o755)
    r = as_user(user, "predict", str(model), str(png), "--save-preprocessed", str(readonly), env={})
    assert r.returncode == 1 and r.stdout.startswith(f"{png}: "), (r.stdout, r.stderr)
    one_error_line(r, str(readonly / "seven.png"), "Permission denied")
