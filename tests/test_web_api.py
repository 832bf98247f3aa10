"""The web API in-process (Starlette's test client): every endpoint, every bad request a clear 4xx, and the
server still answering afterwards."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from subset import Subset

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient

from pyflux_mnist.photo import preprocess
from pyflux_mnist.web.app import Server, create_app
from pyflux_mnist.web.guard import MAX_BODY, allowed_hosts
from pyflux_mnist.web.state import Loaded, training_options

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def server(small_model, mnist, mnist_dir) -> Iterator[Server]:
    """Pictures use 1000 test digits; training runs (child processes) read MNIST from ``mnist_dir``."""
    loaded = Loaded(small_model, 1, "file", "2026-01-01 12:00")
    server = Server(loaded, data=Subset(mnist, 10000, 1000), data_dir=str(mnist_dir))
    yield server
    server.close()


@pytest.fixture
def client(server: Server):
    app = create_app(server, allowed_hosts("127.0.0.1", 8000))
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def drawing(mnist, i: int = 0) -> Image.Image:
    """An MNIST test digit as a 280×280 canvas drawing (white ink on black, like the page's)."""
    return Image.fromarray(mnist.test_images[i]).resize((280, 280), Image.Resampling.BICUBIC)


def still_up(client: TestClient) -> None:
    assert client.get("/api/model").status_code == 200


def refused(r, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


# --- page and model -------------------------------------------------------------------------------------


def test_page_and_its_files(client):
    for path, kind, text in [
        ("/", "text/html", "Look inside"),
        ("/app.js", "text/javascript", "EventSource"),
        ("/style.css", "text/css", "@media"),
    ]:
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind) and text in r.text
    refused(client.get("/static/../../etc/passwd"), 404, "Not Found")
    assert "http://" not in client.get("/").text.replace("http://www.w3.org", "")  # nothing from elsewhere


def test_model_card(client, small_model):
    card = client.get("/api/model").json()
    assert card["recipe"] == "flux-tutorial" and card["sizes"] == [784, 32, 10]
    assert card["parameters"] == 784 * 32 + 32 + 32 * 10 + 10
    assert card["test_accuracy"] == small_model.meta["test_accuracy"]
    assert card["version"] == 1 and card["has_losses"] is False


# --- predict ----------------------------------------------------------------------------------------------


def test_predict_a_drawing_as_predict_does(client, small_model, mnist):
    img = drawing(mnist, 0)
    r = client.post("/api/predict", content=png(img), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    digit = preprocess(img)  # the CLI's preprocessing
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["steps"][-1]["png"].split(",")[1]))))
    assert np.array_equal(seen, digit)
    probs = small_model.probabilities(digit[None])[0]
    assert body["label"] == int(np.argmax(probs)) == mnist.test_labels[0]
    assert np.allclose(body["probabilities"], probs, atol=1e-5)
    assert body["top"][0][0] == body["label"] and len(body["top"]) == 3
    assert body["size"] == [280, 280] and body["model_version"] == 1


def test_predict_a_jpeg_photo(client, mnist):
    from renderings import render

    buf = io.BytesIO()
    render(mnist.test_images[1], "lighting", np.random.default_rng(0)).convert("RGB").save(buf, "JPEG")
    r = client.post("/api/predict", content=buf.getvalue(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["label"] == mnist.test_labels[1]


def test_predict_a_desk_photo_with_its_strip(client, small_model, mnist, tmp_path):
    """``?strip=1`` adds the picture ``predict --save-preprocessed`` writes: photo, straightened, 28×28."""
    from desk_photos import desk_photo

    from pyflux_mnist.photo import strip, trace

    path = tmp_path / "desk.jpg"
    desk_photo(mnist.test_images[1], np.random.default_rng(3), "turned").save(path, quality=90)
    r = client.post("/api/predict?strip=1", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["kind"] for s in body["steps"]] == ["strip", "digit"]
    t = trace(path)
    shown = Image.open(io.BytesIO(base64.b64decode(body["steps"][0]["png"].split(",")[1])))
    assert np.array_equal(np.asarray(shown), np.asarray(strip(t, height=300)))
    assert body["label"] == int(small_model.predict(t.digit[None])[0])
    plain = client.post("/api/predict", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert [s["kind"] for s in plain.json()["steps"]] == ["digit"]


@pytest.mark.parametrize(
    ("body", "kind", "status", "words"),
    [
        (b"\x89PNG", "text/plain", 415, "Content-Type image/"),
        (b"", "image/png", 400, "empty"),
        (b"hello, not an image", "image/png", 422, "not an image"),
        (b"GIF89a" + b"\0" * 20, "image/gif", 422, "the upload"),
        (None, "image/png", 422, "damaged or truncated"),  # a PNG cut in half
        ("blank", "image/png", 422, "ink"),
        ("bomb", "image/png", 422, "too large"),
    ],
)
def test_predict_refuses_bad_uploads(client, mnist, body, kind, status, words):
    if body is None:
        body = png(drawing(mnist))[:600]
    elif body == "blank":
        body = png(Image.new("L", (280, 280), 0))
    elif body == "bomb":  # 10000 x 10000 pixels in a few kB: refused before it is decoded
        body = png(Image.new("1", (10_000, 10_000), 0))
    r = client.post("/api/predict", content=body, headers={"Content-Type": kind})
    refused(r, status, words)
    assert "pyflux-mnist-upload" not in r.json()["error"]  # the server's temporary file is never named
    still_up(client)


def test_predict_refuses_too_large_uploads(client):
    big = b"\0" * (MAX_BODY + 1)
    refused(client.post("/api/predict", content=big, headers={"Content-Type": "image/png"}), 413, "20 MB")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(21):
            yield b"\0" * (1024 * 1024)

    refused(
        client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"}), 413, "20 MB"
    )
    still_up(client)


# --- Host and Origin --------------------------------------------------------------------------------------


def test_other_hosts_are_refused(client):
    refused(client.get("/api/model", headers={"Host": "attacker.example:8000"}), 421, "attacker.example")
    refused(client.get("/", headers={"Host": "127.0.0.1:9999"}), 421, "does not answer")
    assert client.get("/api/model", headers={"Host": "localhost:8000"}).status_code == 200
    still_up(client)


def test_state_changing_requests_from_other_origins_are_refused(client, mnist):
    img = png(drawing(mnist))
    for headers in (
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8001"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        r = client.post("/api/predict", content=img, headers={"Content-Type": "image/png", **headers})
        refused(r, 403, "not accepted")
    refused(
        client.post("/api/train", json={"recipe": "flux-tutorial"}, headers={"Origin": "http://x.example"}),
        403,
        "not accepted",
    )
    r = client.post(
        "/api/predict", content=img, headers={"Content-Type": "image/png", "Origin": "http://127.0.0.1:8000"}
    )
    assert r.status_code == 200
    assert (
        client.get("/api/model", headers={"Origin": "http://attacker.example"}).status_code == 200
    )  # read-only
    still_up(client)


# --- pictures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["weights", "backquery", "confusion"])
def test_pictures(client, name):
    r = client.get(f"/api/pictures/{name}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "PNG" and min(img.size) > 100


def test_missing_and_unknown_pictures(client):
    refused(client.get("/api/pictures/loss.png"), 404, "no loss curve")
    refused(client.get("/api/pictures/passwd.png"), 404, "no picture 'passwd'")
    assert client.get("/api/pictures/..%2F..%2Fetc%2Fpasswd.png").status_code == 404
    still_up(client)


# --- training ---------------------------------------------------------------------------------------------


def events(client: TestClient) -> list[tuple[str, dict]]:
    out, name = [], None
    with client.stream("GET", "/api/train/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    return out


def test_train_options_come_from_the_registry(client):
    from pyflux_mnist.backends import backend_status
    from pyflux_mnist.recipes import RECIPES

    options = client.get("/api/train/options").json()
    assert [r["name"] for r in options["recipes"]] == list(RECIPES)
    first = options["recipes"][0]
    assert {b["name"]: b["reason"] for b in first["backends"]} == backend_status(RECIPES[first["name"]])


def test_train_streams_progress_then_switches_the_model(client):
    refused(client.get("/api/train/events"), 404, "no training run")
    assert client.get("/api/train").json() == {"state": "idle"}
    r = client.post(
        "/api/train", json={"recipe": "flux-tutorial", "backend": "numpy", "steps": 12, "seed": 1}
    )
    assert r.status_code == 202, r.text
    seen = events(client)
    names = [n for n, _ in seen]
    assert names[-1] == "end" and names.count("progress") >= 2
    points = [p for _, s in seen for p in s["points"]]
    assert [p[0] for p in points] == list(range(1, 13))  # every step's loss, once, in order
    end = seen[-1][1]
    assert end["state"] == "done" and end["model_version"] == 2
    card = client.get("/api/model").json()
    assert (card["version"], card["steps"], card["seed"], card["has_losses"]) == (2, 12, 1, True)
    assert card["source"] == "trained here"
    assert client.get("/api/pictures/loss.png").status_code == 200
    refused(client.post("/api/train/stop"), 409, "no training run")


def test_second_training_is_busy_and_stop_keeps_the_model(client):
    r = client.post("/api/train", json={"recipe": "flux-tutorial", "backend": "numpy", "steps": 100000})
    assert r.status_code == 202
    refused(client.post("/api/train", json={"recipe": "keras", "backend": "numpy"}), 409, "busy")
    deadline = time.time() + 60
    while client.get("/api/train").json()["step"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert client.post("/api/train/stop").json() == {"stopping": True}
    end = events(client)[-1][1]
    assert end["state"] == "stopped" and "the model in use is unchanged" in end["message"]
    assert 2 <= end["step"] < 100000
    assert client.get("/api/model").json()["version"] == 1


def test_a_training_process_that_dies_is_a_failed_run_not_a_dead_server(client, server):
    """As if a backend crashed natively (a segfault in Julia, say): the run fails, the server answers."""
    assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 100000}).status_code == 202
    deadline = time.time() + 60
    while client.get("/api/train").json()["step"] < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert server.job is not None and server.job.process is not None
    server.job.process.kill()
    end = events(client)[-1][1]
    assert end["state"] == "failed" and "ended without a result (exit -9)" in end["message"]
    assert client.get("/api/model").json()["version"] == 1
    assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 2}).status_code == 202
    assert events(client)[-1][1]["state"] == "done"


def _unavailable_pair() -> tuple[str, str, str] | None:
    for r in training_options()["recipes"]:
        for b in r["backends"]:
            if b["reason"] is not None:
                return r["name"], b["name"], b["reason"]
    return None


@pytest.mark.parametrize(
    ("body", "kind", "status", "words"),
    [
        ("{not json", "application/json", 400, "not valid JSON"),
        ('{"recipe": "keras"}', "text/plain", 415, "send JSON"),
        ("[1, 2]", "application/json", 400, "JSON object"),
        ('{"recipe": "no-such"}', "application/json", 400, "unknown recipe 'no-such'"),
        ('{"backend": "nope"}', "application/json", 400, "unknown backend"),
        ('{"recipe": 3}', "application/json", 400, "recipe must be a name"),
        ('{"backend": 3}', "application/json", 400, "backend must be a name"),
        ('{"steps": -5}', "application/json", 400, "steps must be a positive integer"),
        ('{"steps": "ten"}', "application/json", 400, "steps must be a whole number"),
        ('{"seed": true}', "application/json", 400, "seed must be a whole number"),
        ('{"seed": -1}', "application/json", 400, "seed must be an integer"),
        ('{"steps": 5, "epochs": 1}', "application/json", 400, "either steps or epochs"),
        ('{"path": "/etc/passwd"}', "application/json", 400, "unknown field(s): path"),
    ],
)
def test_train_refuses_bad_requests(client, body, kind, status, words):
    r = client.post("/api/train", content=body.encode(), headers={"Content-Type": kind})
    refused(r, status, words)
    assert client.get("/api/train").json()["state"] in ("idle", "failed")
    still_up(client)


def test_train_refuses_a_backend_that_cannot_run_the_recipe(client):
    pair = _unavailable_pair()
    if pair is None:
        pytest.skip("every backend can run every recipe here")
    recipe, backend, reason = pair
    refused(client.post("/api/train", json={"recipe": recipe, "backend": backend}), 400, reason)


# --- a crash inside one request ---------------------------------------------------------------------------


def test_a_crash_in_one_request_is_a_500_and_the_server_goes_on(client, server, mnist, monkeypatch):
    def broken(images):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(server.loaded.model, "probabilities", broken)
    r = client.post("/api/predict", content=png(drawing(mnist)), headers={"Content-Type": "image/png"})
    refused(r, 500, "internal error: RuntimeError")
    monkeypatch.undo()
    r = client.post("/api/predict", content=png(drawing(mnist)), headers={"Content-Type": "image/png"})
    assert r.status_code == 200


def test_a_child_that_writes_much_to_stderr_does_not_block_the_run(client, server, monkeypatch):
    """Julia's first use, say, prints far more than a pipe holds (64 KiB) before any result: the follower
    reads stdout to its end before stderr, so stderr must not be a pipe the child can fill and block on."""
    from pyflux_mnist.web import state

    chatty = (
        "import sys; sys.stdin.read(); "
        "sys.stderr.write('x' * 300_000 + '\\nlast words\\n'); sys.stderr.flush()"
    )
    result = '; print(\'{"event": "error", "message": "boom"}\')'

    def run_until_settled(code: str) -> dict:
        monkeypatch.setattr(state, "WORKER", [sys.executable, "-c", code])
        assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 2}).status_code == 202
        deadline = time.time() + 60  # a blocked child would never settle: fail, don't hang
        while (now := client.get("/api/train").json())["state"] in ("starting", "running"):
            assert time.time() < deadline, "the run never ended: the child is blocked on its stderr"
            time.sleep(0.05)
        return now

    end = run_until_settled(chatty + result)
    assert end["state"] == "failed" and end["message"] == "boom"
    end = run_until_settled(chatty)  # no result at all: the message ends with stderr's last line
    assert end["state"] == "failed" and end["message"].endswith("(exit 0): last words")


# --- round three (issue 19): framing, busy decodes, 500s that were 4xx, Stop, the events' cost -----------


def test_every_response_forbids_framing_and_foreign_scripts(client):
    """A framed page could trick a click on Start or Stop: every answer, page or error, forbids it."""
    answers = [
        client.get("/"),
        client.get("/app.js"),
        client.get("/api/model"),
        client.get("/api/pictures/nothing.png"),  # the app's 404
        client.get("/api/model", headers={"Host": "rebound.example"}),  # the guard's 421
        client.post("/api/predict", content=b"x" * (MAX_BODY + 1), headers={"Content-Type": "image/png"}),
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 404, 421, 413]
    for r in answers:
        assert r.headers["x-frame-options"] == "DENY"
        csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
        assert csp["frame-ancestors"] == ["'none'"] and csp["script-src"] == ["'self'"]
        assert csp["connect-src"] == ["'self'"] and csp["img-src"] == ["'self'", "data:", "blob:"]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_a_prediction_that_finds_no_decode_slot_is_a_503_to_retry(client, server, mnist, monkeypatch):
    from pyflux_mnist.web import app as web_app
    from pyflux_mnist.web.budget import Budget

    monkeypatch.setattr(web_app, "DECODE_WAIT_S", 0.2)
    server.decodes = Budget(1, count=0, what="pictures")  # every slot taken
    r = client.post("/api/predict", content=png(drawing(mnist)), headers={"Content-Type": "image/png"})
    refused(r, 503, "the server is busy with other pictures; try again in a few seconds")
    assert r.headers["retry-after"] == "5"
    server.decodes = Budget(web_app.MAX_DECODE_BYTES, web_app.DECODES)
    r = client.post("/api/predict", content=png(drawing(mnist)), headers={"Content-Type": "image/png"})
    assert r.status_code == 200


def test_deeply_nested_json_is_a_400_not_a_500(client):
    r = client.post("/api/train", content=b"[" * 100_000, headers={"Content-Type": "application/json"})
    refused(r, 400, "nested too deeply")
    still_up(client)


def test_a_cache_that_is_a_file_is_a_400_not_a_500(client, tmp_path, monkeypatch):
    cache = tmp_path / "afile"
    cache.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    r = client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 2})
    refused(r, 400, f"cannot keep a trained model in {cache}/pyflux-mnist/web: Not a directory")
    still_up(client)


def settled(client: TestClient, seconds: float = 60) -> dict:
    deadline = time.time() + seconds  # a run that never settles fails the test, it does not hang it
    while (now := client.get("/api/train").json())["state"] in ("starting", "running"):
        assert time.time() < deadline, f"the run is still {now['state']} after {seconds} s"
        time.sleep(0.05)
    return now


def test_stop_ends_a_hung_training_child(client, server, monkeypatch):
    """A child stuck in native code (or ignoring SIGINT and SIGTERM): Stop escalates to SIGKILL after the
    grace periods, the run is stopped, and a new run can start (the old code: `running` and 409 forever)."""
    from pyflux_mnist.web import state

    hung = (
        "import signal, sys, time; sys.stdin.read(); "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        'print(\'{"event": "progress", "step": 1, "total": 9, "loss": 2.0}\', flush=True); time.sleep(600)'
    )
    monkeypatch.setattr(state, "WORKER", [sys.executable, "-c", hung])
    monkeypatch.setattr(state, "STOP_GRACE_S", 0.3, raising=False)
    assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 9}).status_code == 202
    deadline = time.time() + 60
    while client.get("/api/train").json()["step"] < 1:
        assert time.time() < deadline
        time.sleep(0.05)
    assert client.post("/api/train/stop").json() == {"stopping": True}
    end = settled(client, 30)
    assert end["state"] == "stopped", end
    assert end["message"] == (
        "stopped after step 1 (it did not stop by itself and was ended); the model in use is unchanged"
    )
    monkeypatch.undo()
    assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 2}).status_code == 202
    assert settled(client)["state"] == "done"


def test_stop_at_once_is_stopped_not_failed(client):
    """Stop within the child's first moments (before it can handle Ctrl-C) was `failed ...
    KeyboardInterrupt`; it is a stopped run."""
    assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 100000}).status_code == 202
    assert client.post("/api/train/stop").json() == {"stopping": True}
    end = settled(client)
    assert end["state"] == "stopped", end
    assert end["message"].endswith("the model in use is unchanged")
    assert client.get("/api/model").json()["version"] == 1


def test_a_long_runs_history_stays_bounded(client, monkeypatch):
    """40,000 progress points (a long keras run sends ~2 M): what a new listener or a poll gets stays at
    most MAX_POINTS, spread over the whole run, first and last steps known (the old code: all of them)."""
    from pyflux_mnist.web import state

    many = (
        "import sys; sys.stdin.read(); out = sys.stdout; "
        '[out.write(\'{"event": "progress", "step": %d, "total": 40000, "loss": 1.5}\\n\' % i) '
        "for i in range(1, 40001)]; "
        'print(\'{"event": "stopped", "message": "x"}\')'
    )
    monkeypatch.setattr(state, "WORKER", [sys.executable, "-c", many])
    monkeypatch.setattr(state, "MAX_POINTS", 500, raising=False)
    assert client.post("/api/train", json={"recipe": "flux-tutorial", "steps": 2}).status_code == 202
    end = settled(client)
    assert end["state"] == "stopped" and end["step"] == 40000
    steps = [p[0] for p in end["points"]]
    assert 250 <= len(steps) <= 500, len(steps)
    assert steps[0] == 1 and steps == sorted(steps) and steps[-1] > 40000 - 2 * 40000 // len(steps)
    streamed = [p for _, s in events(client) for p in s["points"]]
    assert len(streamed) <= 500
