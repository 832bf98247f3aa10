"""The .npz model file: round trip, atomic save, and refusal of anything that is not a sound model."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from pyflux_mnist.errors import ModelFileError
from pyflux_mnist.init import init_params
from pyflux_mnist.model import Model, load_model
from pyflux_mnist.recipes import get_recipe


@pytest.fixture
def model() -> Model:
    r = get_recipe("flux-tutorial")
    return Model(r, init_params(r.model, r.init, np.random.default_rng(0)), {"backend": "numpy"})


def test_round_trip_keeps_weights_recipe_and_meta(model: Model, tmp_path) -> None:
    path = model.save(tmp_path / "m.npz")
    loaded = load_model(path)
    assert loaded.recipe == model.recipe
    assert loaded.meta["backend"] == "numpy"
    for a, b in zip(model.params, loaded.params, strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W1", "W2", "b1", "b2", "meta"]
        assert npz["W1"].shape == (32, 784)  # (out, in), as Flux and PyTorch


def test_predict_accepts_the_usual_image_shapes(model: Model) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = model.predict(images)
    assert labels.shape == (5,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(model.predict(images.reshape(5, 784)), labels)
    assert model.predict(images[0])[0] == labels[0]
    np.testing.assert_allclose(model.probabilities(images).sum(axis=1), 1, rtol=1e-5)


def test_save_failure_leaves_previous_file_intact(model: Model, tmp_path) -> None:
    path = model.save(tmp_path / "m.npz")
    before = path.read_bytes()
    with pytest.raises(ModelFileError, match="cannot save"):
        model.save(tmp_path / "missing-dir" / "m.npz")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left behind


def _rewrite(path, **entries) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(entries)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"W1": np.zeros((32, 784), np.float64)}, "float32"),
        ({"W1": np.zeros((31, 784), np.float32)}, "float32"),
        ({"b2": None}, "expected entries"),
        ({"extra": np.zeros(3, np.float32)}, "expected entries"),
        ({"W2": np.full((10, 32), np.nan, np.float32)}, "NaN"),
        ({"meta": np.array("{not json")}, "not valid JSON"),
        ({"meta": np.array(json.dumps({"format": "other"}))}, "not a pyflux-mnist model"),
        ({"meta": None}, "no metadata"),
        ({"W1": np.array([object()], dtype=object)}, "float32"),
    ],
)
def test_bad_files_are_refused_with_one_clear_line(model: Model, tmp_path, change, message) -> None:
    path = model.save(tmp_path / "m.npz")
    if "W1" in change and change["W1"].dtype == object:
        # np.savez needs pickling for object arrays; write the hostile file with allow_pickle.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays.update(change)
        np.savez(path, **arrays)
    else:
        _rewrite(path, **change)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_inconsistent_recipe_in_meta_is_refused(model: Model, tmp_path) -> None:
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
    meta["recipe"]["model"]["sizes"] = [784, 64, 10]
    _rewrite(path, meta=np.array(json.dumps(meta)))
    with pytest.raises(ModelFileError, match="float32"):
        load_model(path)
    meta["recipe"]["model"]["sizes"] = [784, 10**9, 10]
    _rewrite(path, meta=np.array(json.dumps(meta)))
    with pytest.raises(ModelFileError, match="layer sizes"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"<html>not found</html>", b"PK\x03\x04garbage"])
def test_non_model_files_are_refused(tmp_path, content: bytes) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        load_model(path)


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="no model file"):
        load_model(tmp_path / "nope.npz")
    with pytest.raises(ModelFileError, match="directory"):
        load_model(tmp_path)


def test_zip_without_npy_members_is_refused(tmp_path) -> None:
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.npy", b"\x93NUMPY garbage")
    with pytest.raises(ModelFileError):
        load_model(path)


def test_saved_files_get_ordinary_permissions(model: Model, tmp_path) -> None:
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    path = model.save(tmp_path / "m.npz")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
