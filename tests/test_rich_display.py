"""A Model and a TrainResult in Jupyter: a card (HTML, every string escaped) with pictures, and a PNG;
``repr()`` stays one line. Checked through IPython's own display formatter, as a notebook calls it."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from subset import Subset

import pyflux_mnist as pm
from pyflux_mnist.spec import Recipe

format_display_data = pytest.importorskip("IPython.core.formatters").format_display_data

CARD_TAGS = {"div", "table", "tr", "th", "td", "img"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data) -> None:
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _img_src_png(src: str | None) -> Image.Image:
    assert src is not None and src.startswith("data:image/png;base64,")
    return _png(base64.b64decode(src.split(",", 1)[1]))


@pytest.fixture(scope="module")
def result(mnist) -> pm.TrainResult:
    return pm.train("flux-tutorial", data=Subset(mnist, 2000, 1000), steps=8, hidden=16, lr=0.01)


def test_a_train_result_shows_as_a_card_with_its_loss_curve_and_weights(result) -> None:
    data, _ = format_display_data(result)
    assert set(data) == {"text/plain", "text/html", "image/png"}
    assert data["text/plain"] == repr(result) and "\n" not in repr(result)
    card = _parse(data["text/html"])
    assert set(card.tags) <= CARD_TAGS
    text = " ".join(card.text)
    assert "Training run: flux-tutorial (hidden 16, steps 8, lr 0.01)" in text  # the recipe as changed
    assert "784-16-10 (relu, identity; crossentropy), 12,730 weights" in text
    assert "adam lr 0.01, full batch, 8 steps, seed 0" in text
    assert "numpy" in text
    assert f"test {result.test_accuracy:.2%}, train {result.train_accuracy:.2%}" in text
    assert re.search(r"8 steps in \d+\.\d s \(setup", text)
    loss, weights = (_img_src_png(i["src"]) for i in card.images)
    assert loss.size == (800, 480)  # the package's loss chart
    assert weights.width >= 400 and np.asarray(weights.convert("RGB")).std() > 10  # drawn, not blank
    assert [i["alt"] for i in card.images] == [
        "training loss of flux-tutorial (hidden 16, steps 8, lr 0.01)",
        "first-layer weights of flux-tutorial (hidden 16, steps 8, lr 0.01)",
    ]
    assert _png(data["image/png"]).size == (800, 480)  # without HTML: the loss curve


def test_a_model_shows_as_a_card_with_its_weights(result, tmp_path) -> None:
    model = pm.load_model(result.model.save(tmp_path / "m.npz"))
    data, _ = format_display_data(model)
    assert set(data) == {"text/plain", "text/html", "image/png"}
    assert data["text/plain"] == repr(model) and "\n" not in repr(model)
    card = _parse(data["text/html"])
    text = " ".join(card.text)
    assert "Model: flux-tutorial (hidden 16, steps 8, lr 0.01)" in text
    assert f"test {model.meta['test_accuracy']:.2%}" in text
    (weights,) = (_img_src_png(i["src"]) for i in card.images)
    assert weights.tobytes() == _png(data["image/png"]).tobytes()


def test_every_string_in_the_card_is_escaped() -> None:
    """A model file's metadata is anyone's text: none of it may become markup."""
    hostile = '<img src=x onerror="alert(1)">&amp;'
    rng = np.random.default_rng(0)
    recipe = Recipe(name=f"mine{hostile}")
    params = [rng.normal(size=s).astype(np.float32) for pair in recipe.model.shapes for s in pair]
    model = pm.Model(recipe, params, {"backend": hostile, "seed": hostile, "test_accuracy": 0.5})
    html = model._repr_html_()
    assert "<img src=x" not in html and 'onerror="' not in html
    card = _parse(html)
    assert set(card.tags) <= CARD_TAGS
    assert card.tags.count("img") == 1  # the weights picture, nothing else
    text = "".join(card.text)
    assert f"Model: mine{hostile}" in text  # shown as the text it is
    assert hostile in text.split("backend", 1)[1]
    assert f"seed {hostile}" in text
    assert card.images[0]["alt"] == f"first-layer weights of mine{hostile}"  # the attribute held
