"""load_mnist on the real files, and its behaviour with bad files, odd directories and (local) mirrors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from local_mirror import Cut, LocalMirror

from pyflux_mnist.errors import DataError
from pyflux_mnist.idx import write_idx
from pyflux_mnist.mnist import FILES, MnistData, cache_dir, data_info, download_mnist, load_mnist

REPO = Path(__file__).resolve().parent.parent
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- the real data -----------------------------------------------------------------------------------


def test_shapes_and_flags(mnist: MnistData, mnist_dir: Path) -> None:
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.train_labels.shape == (60000,) and mnist.train_labels.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28) and mnist.test_images.dtype == np.uint8
    assert mnist.test_labels.shape == (10000,) and mnist.test_labels.dtype == np.uint8
    assert mnist.verified and mnist.source == str(mnist_dir)


def test_label_counts_and_first_labels(mnist: MnistData) -> None:
    assert np.bincount(mnist.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_pixel_statistics(mnist: MnistData) -> None:
    # From the histogram of pixel values: exact, and no 376 MB float64 copy.
    hist = np.bincount(mnist.train_images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255
    mean = hist @ values / hist.sum()
    std = np.sqrt(hist @ (values - mean) ** 2 / hist.sum())
    assert (round(mean, 4), round(std, 4)) == (0.1307, 0.3081)
    assert mnist.train_images.max() == 255 and mnist.train_images[:, 0, 0].max() == 0


def test_arrays_are_read_only(mnist: MnistData) -> None:
    for a in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
        assert not a.flags.writeable
    with pytest.raises(ValueError):
        mnist.train_labels[0] = 3


def test_memoised_until_a_file_changes(tmp_path: Path, mnist_dir: Path) -> None:
    d = _linked_copy(mnist_dir, tmp_path / "m")
    first = load_mnist(d, offline=True)
    t0 = time.perf_counter()
    assert load_mnist(d, offline=True) is first
    assert time.perf_counter() - t0 < 0.05
    assert load_mnist(d, offline=True, verify=False) is first  # a verified load serves verify=False too
    labels = d / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.write_bytes((mnist_dir / labels.name).read_bytes())  # same content, new file
    again = load_mnist(d, offline=True)
    assert again is not first and np.array_equal(again.test_labels, first.test_labels)


def test_raw_files_are_accepted(tmp_path: Path, mnist_dir: Path) -> None:
    import gzip

    d = _linked_copy(mnist_dir, tmp_path / "raw", skip={"t10k-labels-idx1-ubyte"})
    (d / "t10k-labels-idx1-ubyte").write_bytes(
        gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    )
    assert load_mnist(d, offline=True).verified


# --- user directories ------------------------------------------------------------------------------


def _linked_copy(src: Path, dst: Path, skip: set[str] = frozenset()) -> Path:  # type: ignore[assignment]
    """A directory of symlinks to the real files (cheap), minus ``skip``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name not in skip:
            (dst / f"{name}.gz").symlink_to(src / f"{name}.gz")
    return dst


def _fashion_like(d: Path, n_train: int = 60000) -> Path:
    """Valid IDX files with MNIST's shapes but other contents (as Fashion-MNIST would be)."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, spec in FILES.items():
        n = n_train if name.startswith("train") else spec.shape[0]
        shape = (n, *spec.shape[1:])
        if "labels" in name:
            write_idx(d / f"{name}.gz", rng.integers(0, 10, shape, dtype=np.uint8))
        else:
            write_idx(d / name, np.full(shape, 7, dtype=np.uint8), gzip=False)
    return d


def test_checksum_mismatch_in_user_dir_is_refused_and_kept(tmp_path: Path, mnist_dir: Path) -> None:
    d = _linked_copy(mnist_dir, tmp_path / "m", skip={"train-labels-idx1-ubyte"})
    bad = write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(60000, dtype=np.uint8))
    with pytest.raises(DataError, match="not the MNIST train-labels-idx1-ubyte") as info:
        load_mnist(d, offline=False)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert bad.exists()  # a user's file is never deleted


def test_fashion_like_dir_refused_then_accepted_without_verify(tmp_path: Path) -> None:
    d = _fashion_like(tmp_path / "fashion")
    with pytest.raises(DataError, match="--no-verify"):
        load_mnist(d)
    data = load_mnist(d, verify=False)
    assert not data.verified and data.train_images.shape == (60000, 28, 28)
    assert int(data.train_images[0, 0, 0]) == 7
    info = data_info(d)
    assert info["complete"] and not info["verified"]
    assert not info["files"]["train-images-idx3-ubyte"]["checksum_ok"]


def test_wrong_shapes_refused_even_without_verify(tmp_path: Path) -> None:
    d = _fashion_like(tmp_path / "small", n_train=100)
    with pytest.raises(DataError, match=r"uint8\[60000, 28, 28\]"):
        load_mnist(d, verify=False)


def test_labels_out_of_range_refused_without_verify(tmp_path: Path) -> None:
    d = _fashion_like(tmp_path / "f")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(10000, 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels must be 0\.\.9"):
        load_mnist(d, verify=False)


def test_explicit_dir_missing_files_names_them_and_never_downloads(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _linked_copy(mnist_dir, tmp_path / "m", skip={"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    with LocalMirror() as mirror:
        _online(monkeypatch, mirror.url("good"))
        with pytest.raises(DataError) as info:
            load_mnist(d)
        assert sum(mirror.hits.values()) == 0
    msg = str(info.value)
    assert str(d) in msg and "t10k-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "train-images" not in msg
    monkeypatch.setenv("PYFLUX_MNIST_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere \(from \$PYFLUX_MNIST_DATA\) does not exist"):
        load_mnist()


# --- resolution order and the cache ---------------------------------------------------------------


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "pyflux-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "pyflux-mnist"


def test_resolution_order(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    arg, env, cache = (_linked_copy(mnist_dir, tmp_path / n) for n in ("arg", "env", "xdg/pyflux-mnist"))
    monkeypatch.setenv("PYFLUX_MNIST_DATA", str(env))
    assert load_mnist(arg).source == str(arg)
    assert load_mnist().source == str(env)
    monkeypatch.delenv("PYFLUX_MNIST_DATA")
    assert load_mnist().source == str(cache) == str(cache_dir())


def test_offline_with_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    with pytest.raises(DataError) as info:
        load_mnist()  # PYFLUX_MNIST_OFFLINE=1 from conftest
    msg = str(info.value)
    assert str(tmp_path / "xdg" / "pyflux-mnist") in msg and "offline" in msg
    assert all(name in msg for name in FILES) and "\n" not in msg
    with pytest.raises(DataError, match="offline"):
        load_mnist(offline=True)


def _online(monkeypatch: pytest.MonkeyPatch, *mirror_urls: str) -> None:
    monkeypatch.delenv("PYFLUX_MNIST_OFFLINE", raising=False)
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("PYFLUX_MNIST_MIRRORS", ",".join(mirror_urls))


def _serve_real(mirror: LocalMirror, prefix: str, mnist_dir: Path) -> None:
    for name in FILES:
        mirror.routes[f"/{prefix}/{name}.gz"] = (mnist_dir / f"{name}.gz").read_bytes()


def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache that load_mnist() will use: no $PYFLUX_MNIST_DATA in front of it (CI sets one)."""
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "pyflux-mnist"


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp")) if d.exists() else []


def test_corrupt_cached_file_is_healed(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path, monkeypatch)
    _linked_copy(mnist_dir, cache, skip={"train-labels-idx1-ubyte"})
    bad = cache / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(b"<html>503 Service Unavailable</html>")
    # Offline: the bad file is moved aside (never deleted: the cache may hold a user's file) and the error
    # says where to.
    with pytest.raises(DataError, match=r"moved it aside to .*train-labels-idx1-ubyte\.gz\.corrupt"):
        load_mnist()
    assert not bad.exists()
    assert (cache / "train-labels-idx1-ubyte.gz.corrupt").read_bytes().startswith(b"<html>")
    write_idx(bad, np.zeros(60000, dtype=np.uint8))  # valid IDX, wrong content
    with pytest.raises(DataError, match="not the MNIST train-labels") as info:
        load_mnist()
    assert "--no-verify" not in str(info.value)  # in our cache it is damage, not a dataset choice
    write_idx(bad, np.zeros(60000, dtype=np.uint8))
    with LocalMirror() as mirror:
        _serve_real(mirror, "good", mnist_dir)
        _online(monkeypatch, mirror.url("good"))
        data = load_mnist(progress=False)
        assert mirror.hits == {"/good/train-labels-idx1-ubyte.gz": 1}
    assert data.verified and np.bincount(data.train_labels).tolist() == TRAIN_COUNTS
    assert bad.read_bytes() == (mnist_dir / bad.name).read_bytes()
    assert _leftovers(cache) == []


def test_first_mirror_fails_second_serves(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = _cache(tmp_path, monkeypatch)
    _linked_copy(mnist_dir, cache, skip={"train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"})
    real = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    with LocalMirror() as mirror:
        _serve_real(mirror, "good", mnist_dir)
        # The first mirror: a 200 HTML error page for one file, a cut-short body for the other.
        mirror.routes["/bad/train-labels-idx1-ubyte.gz"] = b"<html>Service Unavailable</html>"
        mirror.routes["/bad/t10k-labels-idx1-ubyte.gz"] = Cut(real, len(real) // 2)
        _online(monkeypatch, mirror.url("dead"), mirror.url("bad"), mirror.url("good"))
        data = load_mnist(progress=True)
    assert data.verified
    err = capsys.readouterr().err
    failures = [line for line in err.splitlines() if line.startswith("pyflux-mnist: http")]
    assert len(failures) == 4, err  # one line per failing mirror and file
    assert any("/dead/train-labels-idx1-ubyte.gz: HTTP 404" in line for line in failures)
    assert any("/bad/t10k-labels-idx1-ubyte.gz" in line for line in failures)
    assert "100%" in err  # the progress bar
    assert _leftovers(cache) == []


def test_all_mirrors_fail(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache(tmp_path, monkeypatch)
    _linked_copy(mnist_dir, cache, skip={"t10k-labels-idx1-ubyte"})
    with LocalMirror() as mirror:
        mirror.routes["/bad/t10k-labels-idx1-ubyte.gz"] = (
            mnist_dir / "train-labels-idx1-ubyte.gz"
        ).read_bytes()
        _online(monkeypatch, mirror.url("dead"), mirror.url("bad"))
        with pytest.raises(
            DataError, match="could not download t10k-labels-idx1-ubyte from 2 mirror"
        ) as info:
            load_mnist(progress=False)
    assert "\n" not in str(info.value) and str(cache) in str(info.value)
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists() and _leftovers(cache) == []


def test_download_mnist_fills_a_user_dir_but_does_not_overwrite(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _linked_copy(mnist_dir, tmp_path / "mine", skip={"train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"})
    write_idx(d / "t10k-labels-idx1-ubyte", np.zeros(10000, dtype=np.uint8), gzip=False)
    with LocalMirror() as mirror:
        _serve_real(mirror, "good", mnist_dir)
        _online(monkeypatch, mirror.url("good"))
        with pytest.raises(DataError, match="not the MNIST t10k-labels"):
            download_mnist(d, progress=False)
        assert (d / "train-labels-idx1-ubyte.gz").exists()  # the missing one was fetched
        assert (d / "t10k-labels-idx1-ubyte").exists()  # the bad one kept


_DOWNLOAD = "from pyflux_mnist.mnist import download_mnist; download_mnist(progress=False)"


def test_concurrent_downloads_leave_a_valid_cache(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path, monkeypatch)
    with LocalMirror(chunk_delay_s=0.005) as mirror:
        _serve_real(mirror, "good", mnist_dir)
        _online(monkeypatch, mirror.url("good"))
        procs = [subprocess.Popen([sys.executable, "-c", _DOWNLOAD], cwd=REPO) for _ in range(3)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
        assert mirror.hits["/good/train-images-idx3-ubyte.gz"] >= 2, mirror.hits  # they really overlapped
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in FILES)
    assert load_mnist(offline=True).verified


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_download_leaves_nothing_under_the_final_name(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    cache = _cache(tmp_path, monkeypatch)
    body = (mnist_dir / "train-images-idx3-ubyte.gz").read_bytes()
    with LocalMirror() as mirror:
        _serve_real(mirror, "good", mnist_dir)
        mirror.routes["/good/train-images-idx3-ubyte.gz"] = Cut(body, len(body) // 2, hang=True)
        _online(monkeypatch, mirror.url("good"))
        proc = subprocess.Popen([sys.executable, "-c", _DOWNLOAD], cwd=REPO, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not any(".train-images" in n and n.endswith(".tmp") for n in _leftovers(cache)):
            assert time.monotonic() < deadline and proc.poll() is None, "download never started"
            time.sleep(0.05)
        time.sleep(0.3)  # let it write part of the file
        proc.send_signal(sig)
        proc.wait(timeout=30)
    assert proc.returncode != 0
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    if sig == signal.SIGINT:
        assert _leftovers(cache) == []  # cleaned up on KeyboardInterrupt
    with pytest.raises(DataError, match="offline"):
        load_mnist(offline=True)  # and a later load does not mistake anything for the real file


def test_offline_env_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _cache(tmp_path, monkeypatch)
    monkeypatch.delenv("PYFLUX_MNIST_DATA", raising=False)
    monkeypatch.setenv("PYFLUX_MNIST_MIRRORS", "http://127.0.0.1:9/")  # discard port: nothing listens
    for value in ("1", "true", "YES"):
        monkeypatch.setenv("PYFLUX_MNIST_OFFLINE", value)
        with pytest.raises(DataError, match="offline"):
            load_mnist()
    monkeypatch.setenv("PYFLUX_MNIST_OFFLINE", "0")
    with pytest.raises(DataError, match="could not download"):
        load_mnist(progress=False)


def test_data_info_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_dir: Path) -> None:
    cache = _cache(tmp_path, monkeypatch)
    with LocalMirror() as mirror:
        _online(monkeypatch, mirror.url("good"))
        info = data_info()
        assert sum(mirror.hits.values()) == 0
    assert info["directory"] == str(cache) and not info["complete"] and info["would_download"]
    info = data_info(mnist_dir)
    assert info["verified"] and info["from"] == "argument"
    assert info["files"]["train-labels-idx1-ubyte"]["label_counts"] == TRAIN_COUNTS
    assert info["files"]["t10k-images-idx3-ubyte"]["decompressed_bytes"] == 7840016
    assert os.path.samefile(
        info["files"]["t10k-images-idx3-ubyte"]["path"], mnist_dir / "t10k-images-idx3-ubyte.gz"
    )
