"""A classroom on one server: the live channel every page listens to, the messages a person reads, which
model ``serve`` keeps for next time, and the warning when MNIST is missing. Against ``serve`` as a process
(the live channel is an endless stream, which the in-process test client cannot read a part of)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_web_serve import start
from test_web_serve import stop_cleanly as stop

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from pyflux_mnist.web.app import keep_if_better


def png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, cache: Path) -> None:
        self.proc, self.url, self.cache = proc, url, cache
        found = re.search(r"http://([\d.]+):(\d+)/", url)
        assert found is not None
        self.host, self.port = found.group(1), int(found.group(2))

    def request(
        self, method: str, path: str, body: bytes | str | None = None, kind: str = ""
    ) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request(method, path, body, {"Content-Type": kind} if kind else {})
        r = conn.getresponse()
        status, data = r.status, r.read()
        conn.close()
        return status, json.loads(data) if data.startswith(b"{") else {}

    def live(self) -> Iterator[tuple[str, dict]]:
        """The live channel's events, as a page's EventSource reads them."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        conn.request("GET", "/api/live")
        r = conn.getresponse()
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        try:
            while True:
                line = r.fp.readline().decode()
                if line.startswith("event: "):
                    name = line[7:].strip()
                elif line.startswith("data: ") and name is not None:
                    yield name, json.loads(line[6:])
                    name = None
                elif not line:
                    return
        finally:
            conn.close()


def serve(model: Path, cache: Path, data: str) -> tuple[subprocess.Popen[str], str]:
    env = {"XDG_CACHE_HOME": str(cache), "PYFLUX_MNIST_DATA": data, "PYFLUX_MNIST_OFFLINE": "1"}
    return start([str(model), "--port", "0"], env)


@pytest.fixture(scope="module")
def served(small_model, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("live")
    model = small_model.save(folder / "model.npz")
    cache = folder / "cache"
    # A better model kept from an earlier session: a short run must not replace it.
    (cache / "pyflux-mnist" / "web").mkdir(parents=True)
    small_model.save(cache / "pyflux-mnist" / "web" / "last-model.npz")
    proc, line = serve(model, cache, str(mnist_dir))
    if "http://" not in line:
        proc.kill()
        pytest.fail(f"serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    yield Served(proc, line.split(" on ")[1].split()[0], cache)
    err = stop(proc)
    assert "Warning" not in err  # MNIST is there: no warning


def test_a_new_page_is_told_the_present_at_once(served: Served):
    events = served.live()
    name, card = next(events)
    assert name == "model" and card["version"] == 1 and card["label"] == "flux-tutorial (steps 40)"
    assert [p["name"] for p in card["pictures"]] == ["weights", "backquery", "confusion", "loss"]
    assert all(p["caption"] and p["alt"] for p in card["pictures"])
    name, run = next(events)
    assert name == "training" and run["state"] == "idle" and run["running"] is False


def test_every_page_follows_a_run_and_a_later_page_sees_it(served: Served):
    before = served.live()
    assert [n for n, _ in (next(before), next(before))] == ["model", "training"]
    status, started = served.request(
        "POST",
        "/api/train",
        json.dumps({"recipe": "flux-tutorial", "steps": 12, "seed": 1}),
        "application/json",
    )
    assert status == 202, started
    assert started["running"] is True and started["steps"] == 12 and started["seed"] == 1
    seen: list[tuple[str, dict]] = []
    for name, data in before:
        seen.append((name, data))
        if name == "training" and not data["running"]:
            break
    runs = [d for n, d in seen if n == "training"]
    assert {d["id"] for d in runs} == {started["id"]}
    assert [p[0] for d in runs for p in d["points"]] == list(range(1, 13))  # each point once, in order
    end = runs[-1]
    assert end["state"] == "done" and end["model_version"] == 2
    names = [n for n, _ in seen]
    assert "model" in names and names.index("model") < len(names) - 1  # the new model before the end
    card = next(d for n, d in seen if n == "model")
    assert card["version"] == 2 and card["label"] == "flux-tutorial (steps 12)"
    # The kept model (0.85) is better than 12 steps: it stays the one serve starts with, and the page says so.
    assert "serve still starts with the better last model" in end["message"]

    later = served.live()  # a page opened after the run
    (n1, c1), (n2, r2) = next(later), next(later)
    assert (n1, c1["version"], c1["label"]) == ("model", 2, "flux-tutorial (steps 12)")
    assert n2 == "training" and r2["state"] == "done" and r2["reset"] is True
    assert [p[0] for p in r2["points"]] == list(range(1, 13))


@pytest.mark.parametrize(
    ("path", "body", "kind", "status", "words"),
    [
        (
            "/api/predict?name=notes.txt",
            b"shopping list",
            "text/plain",
            415,
            "notes.txt is not an image (PNG, JPEG, …)",
        ),
        ("/api/predict?name=blank.png", "blank", "image/png", 422, "blank.png: no ink found"),
        ("/api/predict?name=cut.png", b"\x89PNG\r\n\x1a\n", "image/png", 422, "cut.png"),
        ("/api/predict?name=%3Cb%3E.png", b"", "image/png", 400, "b.png is empty"),  # the name is cleaned
    ],
)
def test_messages_name_the_file(served: Served, path, body, kind, status, words):
    if body == "blank":
        body = png(Image.new("L", (200, 200), 230))
    got, answer = served.request("POST", path, body, kind)
    assert got == status and words in answer["error"], answer
    assert "the upload" not in answer["error"] and "<" not in answer["error"]


def test_a_drawing_is_read_as_predict_reads_it_without_the_sheet_search(served: Served, mnist):
    """``?drawing=1`` skips looking for paper on the canvas; what the network sees is unchanged."""
    for i in range(5):
        img = (
            Image.fromarray(mnist.test_images[i]).resize((140, 140), Image.Resampling.BICUBIC).convert("RGBA")
        )
        _, plain = served.request("POST", "/api/predict", png(img), "image/png")
        _, fast = served.request("POST", "/api/predict?drawing=1", png(img), "image/png")
        assert fast["steps"][-1]["png"] == plain["steps"][-1]["png"]
        assert fast["probabilities"] == plain["probabilities"]


def test_options_name_the_default_recipe_and_epoch_recipes_total_steps(served: Served):
    _, options = served.request("GET", "/api/train/options")
    by_name = {r["name"]: r for r in options["recipes"]}
    assert options["default"] == "flux-tutorial"
    assert by_name["keras"]["total_steps"] == 5 * 469 and by_name["keras"]["epochs"] == 5
    assert by_name["flux-tutorial"]["total_steps"] == 200


def test_the_favicon_is_served(served: Served):
    conn = http.client.HTTPConnection(served.host, served.port, timeout=30)
    conn.request("GET", "/favicon.ico")
    r = conn.getresponse()
    assert r.status == 200 and r.headers["content-type"] == "image/svg+xml" and b"<svg" in r.read()


def test_keep_if_better(small_model, tmp_path: Path):
    import dataclasses

    run, last = tmp_path / "run.npz", tmp_path / "last.npz"
    small_model.save(run)
    (tmp_path / "run.losses.npz").write_bytes(b"curve")
    assert keep_if_better(run, last) == "serve starts with it next time"  # none kept yet
    assert last.read_bytes() == run.read_bytes() and (tmp_path / "last.losses.npz").read_bytes() == b"curve"
    dataclasses.replace(small_model, meta={**small_model.meta, "test_accuracy": 0.99}).save(last)
    kept = last.read_bytes()
    assert keep_if_better(run, last) == "serve still starts with the better last model (99.00%) next time"
    assert last.read_bytes() == kept


def test_serve_without_mnist_warns_once_and_pictures_say_why_once(small_model, tmp_path: Path):
    model = small_model.save(tmp_path / "model.npz")
    empty = tmp_path / "no-mnist"
    empty.mkdir()
    proc, line = serve(model, tmp_path / "cache", str(empty))
    try:
        assert "http://" in line
        s = Served(proc, line.split(" on ")[1].split()[0], tmp_path / "cache")
        first = s.request("GET", "/api/pictures/confusion.png")
        again = s.request("GET", "/api/pictures/confusion.png")
        assert first[0] == again[0] == 400 and first[1]["error"] == again[1]["error"]
        assert "MNIST" in first[1]["error"]
    finally:
        err = stop(proc)
    assert err.count("Warning: the MNIST files are not in") == 1, err
    assert "Look inside cannot show the back-query and the confusion matrix" in err
    assert "Traceback" not in err


def test_a_run_with_nothing_kept_becomes_the_last_model(small_model, mnist_dir: Path, tmp_path: Path):
    model = small_model.save(tmp_path / "model.npz")
    proc, line = serve(model, tmp_path / "cache", str(mnist_dir))
    try:
        s = Served(proc, line.split(" on ")[1].split()[0], tmp_path / "cache")
        status, _ = s.request("POST", "/api/train", json.dumps({"steps": 3}), "application/json")
        assert status == 202
        deadline = time.time() + 120
        while s.request("GET", "/api/train")[1]["running"] and time.time() < deadline:
            time.sleep(0.2)
        end = s.request("GET", "/api/train")[1]
        assert end["state"] == "done" and "serve starts with it next time" in end["message"]
        last = tmp_path / "cache" / "pyflux-mnist" / "web" / "last-model.npz"
        assert last.exists() and last.with_suffix(".losses.npz").exists()
        assert np.load(last.with_suffix(".losses.npz"))["losses"].shape == (3,)
    finally:
        stop(proc)


def test_ctrl_c_with_pages_listening_is_one_line(small_model, mnist_dir: Path, tmp_path: Path):
    """Open live channels must not turn Ctrl-C into a cancelled-stream traceback after the grace time."""
    proc, line = serve(small_model.save(tmp_path / "model.npz"), tmp_path / "cache", str(mnist_dir))
    s = Served(proc, line.split(" on ")[1].split()[0], tmp_path / "cache")
    pages = [s.live() for _ in range(3)]
    for events in pages:
        assert next(events)[0] == "model"
    err = stop(proc)
    assert err.strip().splitlines()[-1] == "stopped" and "Traceback" not in err, err
