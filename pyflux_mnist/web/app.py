"""The JSON API and the page, as a Starlette application (see docs/web.md for every endpoint).

Endpoints are synchronous functions where they compute (Starlette runs those in its thread pool, and
NumPy and Pillow release the GIL), so a slow picture never blocks a prediction. Every error a user can
cause is a 4xx ``{"error": "..."}``; anything else is a 500 with the same shape, and the server goes on.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import pictures
from ..backquery import backquery, digit_prior, method_for
from ..decode_cost import MAX_DECODE_BYTES
from ..errors import ImageError, PyfluxError
from ..mnist import MnistData, cache_dir, data_info, load_mnist
from ..model import load_model
from ..photo import decode_need, strip, trace
from ..recipes import DEFAULT_RECIPE
from ..run import Overrides, Run, build_run
from ..userpaths import os_error_line
from . import live
from .budget import RETRY_AFTER_S, Budget, Busy
from .guard import BodyTooLarge, BodyTooSlow, Guard
from .state import RUNNING, BusyError, Loaded, TrainingJob, file_loaded, losses_path, training_options

if TYPE_CHECKING:
    from ..model import Model

log = logging.getLogger("pyflux_mnist.web")

#: The page's files, read once from the package (no client-supplied path ever reaches the filesystem).
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8"),
          "/favicon.svg": ("favicon.svg", "image/svg+xml"),
          "/favicon.ico": ("favicon.svg", "image/svg+xml")}  # fmt: skip
#: The pictures of Look inside, with what the page says about each (the page builds its figures from this).
PICTURES = {
    "weights": ("Each square is one hidden unit's 784 input weights laid out as the 28×28 picture: "
                "orange where ink raises the unit, blue where it lowers it.",
                "first-layer weights of the first hidden units"),
    "backquery": ("The input the network finds most like each digit: for a sigmoid network, Rashid's "
        "inversion; "
                  "otherwise grown from the average training digit (the digit-prior method), which is why "
                  "networks of different sizes look much alike here. Under each: how this model reads it.",
                  "back-query: the image the network thinks is each digit"),
    "confusion": ("Rows: the true digit; columns: what the network said. The diagonal is right; every other "
                  "number counts one kind of mistake.",
                  "confusion matrix on the 10000 test digits"),
    "loss": ("The training loss at each step of the run that made this model.",
             "loss curve of the training run"),
}  # fmt: skip
#: Pictures with numbers inside that a phone shows at a readable width, to be swiped sideways.
WIDE = frozenset({"confusion"})
#: A file name given with an upload (``?name=``), as it may appear in a message: printable, bounded.
NAME_CHARS = re.compile(r"[^\w .,()+\-]")
NAME_MAX = 80
STRIP_CAPTION = "how it was read: the sheet found (red), straightened, the digit (green box), the 28×28"
#: Seconds between two looks at a training run by an open event stream.
EVENT_POLL_S = 0.1
#: Uploads decoded at once (two cores), together within one decode's memory budget; a request waits
#: this long for its turn, then gets 503 with Retry-After.
DECODES = 2
DECODE_WAIT_S = 10.0


def last_model_path() -> Path:
    """Where ``serve`` keeps the last model it trained (and loads it from when no MODEL is given)."""
    return cache_dir() / "web" / "last-model.npz"


def run_model_path() -> Path:
    """Where a run started from the page saves its model; it becomes the last model only if no worse."""
    return cache_dir() / "web" / "run-model.npz"


def keep_if_better(run: Path, last: Path) -> str:
    """Make the run's model the one ``serve`` starts with next time, unless the one kept there is better
    on the test set (a 40-step demo must not silently replace an hour's model). Says what it did."""
    ours = load_model(run).meta.get("test_accuracy")
    try:
        theirs = load_model(last).meta.get("test_accuracy") if last.exists() else None
    except PyfluxError:
        theirs = None  # a damaged last model: replace it
    if isinstance(theirs, float) and isinstance(ours, float) and theirs > ours:
        return f"serve still starts with the better last model ({theirs:.2%}) next time"
    for src, dst in ((losses_path(run), losses_path(last)), (run, last)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)  # atomic: a crash leaves the old file or the new one, never half of one
    return "serve starts with it next time"


def data_problem(data_dir: str | None) -> str | None:
    """Why the MNIST files cannot be read without a download, or None: checked once, at start."""
    info = data_info(data_dir)
    if info["complete"]:
        return None
    missing = ", ".join(n for n, f in info["files"].items() if not f["present"])
    where = "downloaded on first use" if info["would_download"] else "needed"
    return f"the MNIST files are not in {info['directory']} ({missing}): they are {where}"


class Server:
    """The state behind the API: the model in use, its pictures, the training run and the MNIST data."""

    def __init__(self, loaded: Loaded, data: MnistData | None = None, data_dir: str | None = None) -> None:
        self.loaded = loaded
        self.job: TrainingJob | None = None
        self.closing = False
        self._data, self._data_dir = data, data_dir
        self._lock = threading.Lock()  # model switch, job start
        self._data_lock = threading.Lock()
        self._picture_lock = threading.Lock()
        self._options: dict[str, Any] | None = None
        self.decodes = Budget(MAX_DECODE_BYTES, DECODES, what="pictures")
        self._data_error: PyfluxError | None = None

    def data(self) -> MnistData:
        """The MNIST data, loaded once; a failure is kept too, so it is one message, not one per picture."""
        with self._data_lock:
            if self._data_error is not None:
                raise self._data_error
            if self._data is None:
                try:
                    self._data = load_mnist(self._data_dir)
                except PyfluxError as e:
                    self._data_error = e
                    raise
            return self._data

    def options(self) -> dict[str, Any]:
        if self._options is None:
            self._options = training_options()
        return self._options

    def start_training(self, run: Run) -> None:
        with self._lock:
            if self.job is not None and self.job.running:
                s = self.job.snapshot()
                raise BusyError(
                    f"busy: a training run ({s['recipe']} on {s['backend']}) is going; "
                    "wait for it or stop it first"
                )
            output = run_model_path()
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # e.g. XDG_CACHE_HOME names a file: the server's setting, said in one line
                raise PyfluxError(os_error_line(e, output.parent, "cannot keep a trained model in")) from None
            job = TrainingJob(run, self._data_dir, output, self._switch)
            job.start()
            self.job = job

    def _switch(self, path: Path) -> tuple[int, str]:
        """Called when a run has saved its model: use it from now on; keep it for next time if no worse."""
        with self._lock:
            version = self.loaded.version + 1
            self.loaded = file_loaded(path, "trained here", version)
        try:
            kept = keep_if_better(path, last_model_path())
        except (OSError, PyfluxError) as e:
            kept = f"not kept for next time: {getattr(e, 'strerror', None) or e}"
        return version, kept

    def close(self) -> None:
        self.closing = True
        if self.job is not None:
            self.job.kill()

    def picture(self, name: str) -> bytes:
        loaded = self.loaded
        with self._picture_lock:  # one rendering at a time: matplotlib and two cores
            if name not in loaded.pictures:
                loaded.pictures[name] = self._render(name, loaded)
        return loaded.pictures[name]

    def _render(self, name: str, loaded: Loaded) -> bytes:
        """One picture of the model, made as the CLI makes it (``show weights``, ``backquery``,
        ``evaluate --confusion``, ``train --plot``), into a file of the server's naming."""

        model = loaded.model
        with tempfile.TemporaryDirectory(prefix="pyflux-mnist-web-") as tmp:
            out = Path(tmp, f"{name}.png")  # the server's own name, never the client's
            if name == "weights":
                pictures.weights_png(model, out, max_units=36)
            elif name == "backquery":
                method = method_for(model.spec)
                prior = digit_prior(self.data().train_images) if method == "prior" else None
                images, method = backquery(model, method, prior=prior)
                readers = [("self", model.probabilities(images))]
                pictures.backquery_png(images, out, method, model=model, readers=readers)
            elif name == "confusion":
                data = self.data()
                pictures.confusion_png(data.test_labels, model.predict(data.test_images), out, model=model)
            elif loaded.losses is None:
                raise HTTPException(404, "this model file holds no loss curve (train one here to see it)")
            else:
                pictures.loss_curve_png(loaded.losses, out, loaded.epoch_steps, model=model)
            return out.read_bytes()


# --- helpers ------------------------------------------------------------------------------------------


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request) -> bytes:
    try:
        return await request.body()
    except BodyTooLarge as e:
        raise HTTPException(413, str(e)) from None
    except BodyTooSlow as e:
        raise HTTPException(408, str(e)) from None


def png_data_url(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def answer(model: Model, digit: np.ndarray) -> dict[str, Any]:
    probs = model.probabilities(digit[None])[0]  # (10,)
    order = np.argsort(-probs, kind="stable")
    return {
        "label": int(order[0]),
        "probabilities": [round(float(p), 5) for p in probs],
        "top": [[int(k), round(float(probs[k]), 5)] for k in order[:3]],
    }


# --- endpoints ----------------------------------------------------------------------------------------


def page(request: Request) -> Response:
    name, media = STATIC[request.url.path]
    body = request.app.state.static[name]
    return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})


def model_card(server: Server) -> dict[str, Any]:
    """The card of the model in use, with its pictures (name, caption, alt text) for Look inside."""
    pictures = [{"name": n, "caption": c, "alt": a, "wide": n in WIDE} for n, (c, a) in PICTURES.items()]
    return {**server.loaded.card(), "pictures": pictures}


def get_model(request: Request) -> JSONResponse:
    return JSONResponse(model_card(request.app.state.server))


def live_events(request: Request) -> Response:
    """``GET /api/live``: the model and the training run, as they change (see :mod:`.live`)."""
    server: Server = request.app.state.server
    return live.stream(server, lambda: model_card(server), request.is_disconnected)


def upload_name(request: Request) -> str:
    """The name messages give the upload: the page's ``?name=`` (the file's name), else "the upload"."""
    name = NAME_CHARS.sub("", request.query_params.get("name", "")).strip()[:NAME_MAX]
    return name or "the upload"


async def predict(request: Request) -> JSONResponse:
    """``POST /api/predict``: an image as the body → the answer and what the network saw."""
    server: Server = request.app.state.server
    name = upload_name(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith("image/") and kind != "application/octet-stream":
        return error(
            415,
            f"{name} is not an image (PNG, JPEG, …): send the image itself as the body "
            f"(Content-Type image/...), not {kind or 'nothing'}",
        )
    body = await read_body(request)
    if not body:
        return error(400, f"{name} is empty: send a PNG or JPEG")
    loaded = server.loaded
    t0 = time.perf_counter()
    strip_wanted = request.query_params.get("strip") == "1"
    fd, path = tempfile.mkstemp(prefix="pyflux-mnist-upload-", suffix=".img")  # of the server's naming
    try:
        # One worker-thread hop when a decode slot is free (as before the budget); else wait for one.
        decodes, model = server.decodes, loaded.model
        how = Reading(strip_wanted, name, request.query_params.get("drawing") == "1")
        need, result = await asyncio.to_thread(_predict_upload, decodes, model, fd, path, body, how)
        if result is None:
            await decodes.take(need, DECODE_WAIT_S)
            result = await asyncio.to_thread(_predict_taken, decodes, need, model, path, how)
    except ImageError as e:
        return error(422, str(e))
    except Busy as e:
        return JSONResponse({"error": str(e)}, 503, headers={"Retry-After": str(RETRY_AFTER_S)})
    finally:
        os.unlink(path)
    result["model_version"] = loaded.version
    result["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return JSONResponse(result)


class Reading(NamedTuple):
    """How one upload is read: with the strip of steps, the name its messages give it, a drawing."""

    strip: bool = False
    name: str = "the upload"
    drawing: bool = False  # the page's canvas (light ink on black): no sheet of paper looked for


def _predict_upload(
    decodes: Budget, model: Model, fd: int, path: str, body: bytes, how: Reading
) -> tuple[int, dict[str, Any] | None]:
    """Write the upload to ``path`` (open as ``fd``) and read from its header what decoding it will need
    (:func:`~pyflux_mnist.photo.decode_need`: a file it would refuse fails here, before any decode);
    predict it if the decode budget has room now. → ``(need, result or None when no room)``."""
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    try:
        need = decode_need(path)
    except ImageError as e:
        raise ImageError(str(e).replace(path, how.name)) from None
    if not decodes.try_take(need):
        return need, None
    return need, _predict_taken(decodes, need, model, path, how)


def _predict_taken(decodes: Budget, need: int, model: Model, path: str, how: Reading) -> dict[str, Any]:
    """:func:`_predict_file` holding ``need`` of the decode budget, given back here when it ends (in this
    thread: a client that goes away does not free the share of a decode still running)."""
    try:
        return _predict_file(model, path, how)
    finally:
        decodes.give_back(need)


def _predict_file(model: Model, path: str, how: Reading | None = None) -> dict[str, Any]:
    """The upload goes through exactly what ``predict FILE`` does: :func:`~pyflux_mnist.photo.trace` opens
    it with the same format, decompression-bomb and decode-cost checks. Error messages say ``how.name``
    (the file's name the page gives, else "the upload"), never the temporary path. ``how.strip``: also
    the picture of the steps (``predict --save-preprocessed`` writes the same). ``how.drawing``: the
    page's canvas, where no sheet of paper is looked for."""
    how = how or Reading()
    try:
        t = trace(path, name=how.name, sheet=not how.drawing)
    except ImageError as e:
        raise ImageError(str(e).replace(path, how.name)) from None
    with Image.open(path) as img:
        size = img.size
    result = answer(model, t.digit)  # t.digit: (28, 28) uint8
    result["size"] = list(size)
    steps = []
    if how.strip:
        picture = png_data_url(np.asarray(strip(t, height=300)))
        steps.append({"kind": "strip", "name": STRIP_CAPTION, "png": picture})
    steps.append({"kind": "digit", "name": "what the network saw (28×28)", "png": png_data_url(t.digit)})
    result["steps"] = steps
    return result


def picture(request: Request) -> Response:
    """``GET /api/pictures/{name}.png``: weights, backquery, confusion or loss of the model in use."""
    name = request.path_params["name"]
    if name not in PICTURES:
        return error(404, f"no picture {name!r}; there are: {', '.join(PICTURES)}")
    server: Server = request.app.state.server
    return Response(server.picture(name), media_type="image/png", headers={"Cache-Control": "no-cache"})


def options(request: Request) -> JSONResponse:
    server: Server = request.app.state.server
    return JSONResponse(server.options())


async def start_training(request: Request) -> JSONResponse:
    """``POST /api/train`` with JSON ``{"recipe", "backend", "steps"?, "epochs"?, "seed"?}``."""
    server: Server = request.app.state.server
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        return error(415, "send JSON (Content-Type application/json)")
    try:
        spec = json.loads(await read_body(request))
    except (ValueError, UnicodeDecodeError) as e:
        return error(400, f"the body is not valid JSON ({e})")
    except RecursionError:
        return error(400, "the body is not a training request (JSON nested too deeply)")
    if not isinstance(spec, dict):
        return error(400, 'send a JSON object: {"recipe": ..., "backend": ...}')
    unknown = set(spec) - {"recipe", "backend", "steps", "epochs", "seed"}
    if unknown:
        return error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    seed = spec.get("seed")
    try:  # the one check of a run, as the CLI's and the API's (the same words, "did you mean" included)
        changes = Overrides(steps=spec.get("steps"), epochs=spec.get("epochs"))
        run = build_run(
            spec.get("recipe", DEFAULT_RECIPE), spec.get("backend"), 0 if seed is None else seed, changes
        )
        server.start_training(run)
    except BusyError as e:
        return error(409, str(e))
    except PyfluxError as e:
        return error(400, str(e))
    return JSONResponse(server.job.snapshot() if server.job else {}, status_code=202)


def stop_training(request: Request) -> JSONResponse:
    server: Server = request.app.state.server
    job = server.job
    if job is None or not job.running:
        return error(409, "no training run is going")
    job.stop()
    return JSONResponse({"stopping": True})


def training_state(request: Request) -> JSONResponse:
    server: Server = request.app.state.server
    if server.job is None:
        return JSONResponse({"state": "idle"})
    return JSONResponse(server.job.snapshot())


async def training_events(request: Request) -> Response:
    """``GET /api/train/events``: Server-Sent Events, one ``progress`` event per change, then ``end``."""
    server: Server = request.app.state.server
    job = server.job
    if job is None:
        return error(404, "no training run has been started")

    async def events() -> AsyncIterator[str]:
        since, seen = 0, -1
        while not server.closing:
            if job.revision != seen:  # something new: the message is built off the event loop
                seen = job.revision
                text, since, ended = await asyncio.to_thread(_event, job, since)
                yield text
                if ended:
                    return
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_S)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(job: TrainingJob, since: int) -> tuple[str, int, bool]:
    """The next event of a stream: its text, the cursor after it, whether it is the last (``end``)."""
    snap = job.snapshot(since)
    ended = snap["state"] not in RUNNING  # the last new points travel with `end`, never twice
    return f"event: {'end' if ended else 'progress'}\ndata: {json.dumps(snap)}\n\n", snap["next"], ended


# --- errors -------------------------------------------------------------------------------------------


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail))


async def user_error(request: Request, exc: Exception) -> JSONResponse:
    return error(400, str(exc))


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, f"internal error: {type(exc).__name__} (the server goes on; see its log)")


def create_app(server: Server, hosts: frozenset[str]) -> Callable[..., Any]:
    """The ASGI application: the routes inside the :class:`~pyflux_mnist.web.guard.Guard`."""
    routes = [
        *(Route(path, page) for path in STATIC),
        Route("/api/model", get_model),
        Route("/api/live", live_events),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/pictures/{name}.png", picture),
        Route("/api/train/options", options),
        Route("/api/train", training_state, methods=["GET"]),
        Route("/api/train", start_training, methods=["POST"]),
        Route("/api/train/stop", stop_training, methods=["POST"]),
        Route("/api/train/events", training_events),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, PyfluxError: user_error, Exception: internal_error},
    )
    folder = resources.files("pyflux_mnist.web") / "static"
    app.state.static = {name: (folder / name).read_bytes() for name, _ in STATIC.values()}
    app.state.server = server
    return Guard(app, hosts)


__all__ = ["Server", "create_app", "data_problem", "file_loaded", "last_model_path"]
