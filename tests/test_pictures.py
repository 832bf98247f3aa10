"""pictures.py and charts.py: grids read back panel by panel; titles, captions, legends and charts checked
for what a person on the back row needs (size, dark text on light, a label on every panel)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pyflux_mnist import charts, pictures
from pyflux_mnist.errors import PyfluxError


def _panel(img: Image.Image, layout: pictures.GridLayout, i: int) -> np.ndarray:
    """Panel i read back at 28x28 (every scale-th pixel)."""
    a = np.asarray(img.crop(layout.box(i)).convert("L"))
    return a[:: layout.scale, :: layout.scale]


def _ink_rows(a: np.ndarray, dark: int = 128) -> np.ndarray:
    """Indices of the rows of a grey picture that hold dark (text) pixels."""
    return np.flatnonzero((a < dark).any(axis=1))


def _title_band(grid: pictures.Grid) -> np.ndarray:
    return np.asarray(grid.image.convert("L"))[: grid.layout.top]


class FakeModel:
    """What a picture needs from a model: its recipe's name, its metadata and (weights) its parameters."""

    def __init__(self, params=(), name="flux-tutorial", meta=None) -> None:
        self.recipe = type("R", (), {"name": name})()
        self.meta = {"backend": "numpy", "test_accuracy": 0.9227} if meta is None else meta
        self.params = list(params)


def test_model_summary_names_recipe_backend_and_accuracy(small_model):
    assert pictures.model_summary(FakeModel()) == "flux-tutorial · numpy backend · test accuracy 92.27%"
    assert pictures.model_summary(FakeModel(meta={})) == "flux-tutorial"
    s = pictures.model_summary(small_model)  # trained for 40 steps: the override is named (item 10)
    assert s.startswith("flux-tutorial (steps 40) · numpy backend · test accuracy ") and s.endswith("%")


def test_samples_grid_panels_captions_and_title(tmp_path, mnist):
    path = tmp_path / "samples.png"
    grid = pictures.samples_png(mnist.train_images, mnist.train_labels, path, n=25)
    img, layout = Image.open(path), grid.layout
    assert img.size == layout.size and img.mode == "RGB"
    grey = np.asarray(img.convert("L"))
    assert grey[0, 0] == 255 and grey[-1, -1] == 255  # a light page
    title = _ink_rows(_title_band(grid))
    assert len(title) >= 14  # a title (and a subtitle) drawn above the digits
    for i in range(25):
        assert np.array_equal(_panel(img, layout, i), mnist.train_images[i])
        caption = np.asarray(img.crop(layout.caption_box(i)).convert("L"))
        assert caption.min() < 60 and np.median(caption) == 255  # dark text on light
        assert np.ptp(_ink_rows(caption)) + 1 >= 12  # a digit at least 12 px tall
    # Different labels give different caption pixels; equal labels the same ones.
    caps = [np.asarray(img.crop(layout.caption_box(i)).convert("L")) for i in range(25)]
    labels = mnist.train_labels[:25]
    for i in range(25):
        for j in range(i + 1, 25):
            assert np.array_equal(caps[i], caps[j]) == (labels[i] == labels[j])


def test_long_titles_wrap_within_the_picture(mnist):
    short = pictures.digit_grid(mnist.train_images[:3], ["a", "b", "c"], "short")
    long = pictures.digit_grid(mnist.train_images[:3], ["a", "b", "c"], "a long title " * 12)
    assert short.image.width == long.image.width == pictures.MIN_WIDTH
    assert long.layout.top > 2 * short.layout.top
    row = np.asarray(long.image.convert("L"))[: long.layout.top]
    assert row[:, :3].min() == 255 and row[:, -3:].min() == 255  # no text runs off the edges


def test_panels_grow_until_their_captions_fit(mnist):
    grid = pictures.digit_grid(mnist.train_images[:2], ["x", "a caption much wider than 84 pixels"], "t")
    assert grid.layout.scale > 3
    for i in range(2):
        _, y0, x1, y1 = grid.layout.caption_box(i)
        outside = np.asarray(grid.image.convert("L").crop((x1, y0, x1 + pictures.PAD, y1)))
        assert outside.min() == 255


def test_errors_grid_shows_only_misclassified(tmp_path, mnist):
    labels = mnist.test_labels[:50].copy()
    pred = labels.copy()
    wrong = [3, 17, 41]
    pred[wrong] = (labels[wrong] + 1) % 10
    path = tmp_path / "errors.png"
    grid = pictures.errors_png(mnist.test_images[:50], labels, pred, path, model=FakeModel())
    assert grid is not None
    img = Image.open(path)
    assert img.size == grid.layout.size and grid.layout.n == 3
    for k, i in enumerate(wrong):
        assert np.array_equal(_panel(img, grid.layout, k), mnist.test_images[i])
        caption = np.asarray(img.crop(grid.layout.caption_box(k))).astype(int)
        red = caption[(caption.sum(axis=2) < 400)]
        assert len(red) and np.all(red[:, 0] > red[:, 1] + 60)  # captions in (dark) red
    assert len(_ink_rows(_title_band(grid))) >= 14
    none = tmp_path / "none.png"
    assert pictures.errors_png(mnist.test_images[:5], labels[:5], labels[:5], none) is None
    blank = np.asarray(Image.open(none).convert("L"))
    assert blank.shape[1] == pictures.MIN_WIDTH and blank.min() < 60  # says so, in words


def test_weights_are_signed_per_unit_with_a_legend(tmp_path):
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(12, 784)).astype(np.float32)
    W1[5] = 0
    path = tmp_path / "weights.png"
    grid = pictures.weights_png(FakeModel([W1]), path)
    img = Image.open(path)
    layout = grid.layout
    assert img.size == layout.size and layout.bottom > 0
    for i in range(12):
        p = np.asarray(img.crop(layout.box(i)))[:: layout.scale, :: layout.scale].astype(int)
        w = W1[i].reshape(28, 28)
        if i == 5:
            assert p.max() == 0
            continue
        assert np.all(p[w > 0.2 * abs(w).max()][:, 0] > p[w > 0.2 * abs(w).max()][:, 2])  # orange
        assert np.all(p[w < -0.2 * abs(w).max()][:, 2] > p[w < -0.2 * abs(w).max()][:, 0])  # blue
    caps = [np.asarray(img.crop(layout.caption_box(i)).convert("L")) for i in range(12)]
    assert all(c.min() < 60 for c in caps) and len({c.tobytes() for c in caps}) == 12
    # The legend under the grid runs from blue through black to orange, with words under it.
    legend = np.asarray(img)[-layout.bottom :].astype(int)
    bar_row = legend[np.argmax((legend.sum(axis=2) < 100).sum(axis=1))]
    coloured = bar_row[bar_row.sum(axis=1) < 3 * 250]
    assert coloured[0, 2] > 200 and coloured[-1, 0] > 200 and coloured[len(coloured) // 2].max() < 30
    assert len(_ink_rows(np.asarray(img.convert("L"))[-layout.bottom :], 100)) > 20


def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _legible(fig) -> None:
    for t in _texts(fig):
        assert t.get_fontsize() * fig.dpi / 72 >= 12, t.get_text()  # at least 12 px


def test_loss_curve_title_and_smoothing(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    noisy = 2.3 * np.exp(-np.arange(300) / 60) + 0.1 + 0.2 * rng.random(300)
    path = tmp_path / "loss.png"
    fig = pictures.loss_curve_png(noisy, path, epoch_steps=100, model=FakeModel(name="keras"))
    img = np.asarray(Image.open(path).convert("L"))
    assert img.shape == (480, 800) and img.std() > 10
    assert fig._suptitle.get_text() == "Training loss: keras, 300 steps of 100 per epoch"
    ax = fig.axes[0]
    assert ax.get_title() == "numpy backend · test accuracy 92.27%"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"loss per step", "mean of 7 steps (running)", "mean over each whole epoch"}
    x, y = lines["mean of 7 steps (running)"].get_data()
    assert x[0] == 4 and x[-1] == 297  # centred (step x is noisy[x - 1]), only where the window fits
    assert np.allclose(y, [noisy[i - 4 : i + 3].mean() for i in x])
    _legible(fig)
    # A smooth (full-batch) curve gets no running mean: it would smooth nothing.
    smooth = 2.3 * np.exp(-np.arange(200) / 30) + 0.3
    fig = pictures.loss_curve_png(smooth, tmp_path / "smooth.png", title="flux-tutorial")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss per step"]
    assert fig._suptitle.get_text() == "Training loss: flux-tutorial, 200 steps"


def test_running_mean_is_centred_and_has_no_edges():
    y = np.arange(10.0) ** 2
    assert np.allclose(charts.running_mean(y, 3), [(y[i - 1] + y[i] + y[i + 1]) / 3 for i in range(1, 9)])
    assert charts.smooth_window(np.linspace(2, 0.3, 200)) == 1  # too short and smooth
    assert charts.smooth_window(np.linspace(2, 0.3, 1000)) == 1  # long but smooth
    noisy = np.linspace(2, 0.3, 1000) + np.random.default_rng(0).random(1000)
    assert charts.smooth_window(noisy) == 21


def test_confusion_matrix_counts_colour_bar_and_legible_numbers(tmp_path):
    pytest.importorskip("matplotlib")
    labels = np.repeat(np.arange(10), 200)
    pred = labels.copy()
    pred[::7] = 3
    pred[::13] = 5
    m = pictures.confusion_png(labels, pred, tmp_path / "confusion.png")
    assert m.sum() == 2000 and np.trace(m) == np.sum(pred == labels)
    assert m[5, 3] == np.sum((labels == 5) & (pred == 3))
    c = np.asarray(Image.open(tmp_path / "confusion.png").convert("L"))
    assert c.shape == (700, 800) and c.std() > 10
    fig = pictures.confusion_chart(m, tmp_path / "c2.png", FakeModel())
    assert fig._suptitle.get_text() == "Confusion matrix: flux-tutorial"
    ax, bar = fig.axes
    acc = f"{np.trace(m) / m.sum():.2%}"
    assert ax.get_title() == f"numpy backend · {acc} of 2000 digits correct (the diagonal)\nerrors in bold"
    assert bar.get_ylabel() == "digits (count)"
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0", "1", "10", "100"]
    image = ax.get_images()[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert {k: int(t.get_text()) for k, t in cells.items()} == {
        (int(r), int(c)): int(v) for (r, c), v in np.ndenumerate(m) if v
    }
    for (r, col), t in cells.items():
        from matplotlib.colors import to_rgba

        bg = image.cmap(image.norm(m[r, col]))
        lum = sorted([charts._luminance(bg), charts._luminance(to_rgba(t.get_color()))])
        assert (lum[1] + 0.05) / (lum[0] + 0.05) >= 4.5  # WCAG AA contrast on every cell colour
    _legible(fig)


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".jpg", b"\xff\xd8\xff"),
                                               (".JPEG", b"\xff\xd8\xff"), (".svg", b"<svg"),
                                               (".pdf", b"%PDF")])  # fmt: skip
def test_pictures_are_written_in_the_format_their_suffix_names(tmp_path, suffix, magic):
    digits = np.zeros((2, 28, 28), np.uint8)
    pictures.samples_png(digits, np.zeros(2), tmp_path / f"s{suffix}")
    assert (tmp_path / f"s{suffix}").read_bytes().startswith(magic)
    if suffix in (".png", ".jpg"):
        assert Image.open(tmp_path / f"s{suffix}").format == {".png": "PNG", ".jpg": "JPEG"}[suffix]
    pytest.importorskip("matplotlib")
    pictures.loss_curve_png([1.0, 0.5], tmp_path / f"l{suffix}")
    data = (tmp_path / f"l{suffix}").read_bytes()
    assert data.startswith(magic) or (suffix == ".svg" and b"<svg" in data[:400])


def test_unknown_picture_suffix_is_refused_before_writing(tmp_path):
    for name in ("x.gif", "x.png.txt", "x.bmp"):
        suffix = (tmp_path / name).suffix
        with pytest.raises(
            PyfluxError, match=rf"a picture can be written as .jpeg, .jpg, .pdf, .png, .svg, not \{suffix}$"
        ):
            pictures.picture_format(tmp_path / name)
        with pytest.raises(PyfluxError, match=rf"not \{suffix}$"):
            pictures.samples_png(np.zeros((1, 28, 28), np.uint8), np.zeros(1), tmp_path / name)
        assert not (tmp_path / name).exists()
    assert pictures.picture_format("A.JPG") == "jpeg"
    assert pictures.picture_format("plain") == "png"  # no suffix: PNG
    pictures.samples_png(np.zeros((1, 28, 28), np.uint8), np.zeros(1), tmp_path / "plain")
    assert (tmp_path / "plain").read_bytes().startswith(b"\x89PNG")


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(PyfluxError, match=r"pyflux-mnist\[plots\]"):
        pictures.loss_curve_png([1.0, 0.5], tmp_path / "x.png")


def test_unwritable_path(tmp_path):
    with pytest.raises(PyfluxError, match="cannot write"):
        pictures.samples_png(np.zeros((1, 28, 28), np.uint8), np.zeros(1), tmp_path / "no" / "x.png")


def test_grid_svg_holds_the_same_pixels(tmp_path, mnist):
    import base64
    import io
    import re

    grid = pictures.samples_png(mnist.train_images, mnist.train_labels, tmp_path / "s.svg", n=4)
    svg = (tmp_path / "s.svg").read_text()
    w, h = grid.image.size
    assert f'width="{w}" height="{h}"' in svg
    data = re.search(r'href="data:image/png;base64,([^"]+)"', svg)
    assert data is not None
    embedded = Image.open(io.BytesIO(base64.b64decode(data.group(1))))
    assert np.array_equal(np.asarray(embedded), np.asarray(grid.image))
