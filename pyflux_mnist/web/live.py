"""``GET /api/live``: one Server-Sent Events channel from the server to every open page.

A page opens it once and keeps it: it hears of every model switch (``model``: the new card, so the
header, the card and the pictures follow) and of every training run, whoever started it (``training``:
the run's state with its ``[step, loss]`` points). On connect it is told the present at once: the model in
use and the last run with all its points, so a tab opened during or after a run shows it. After that,
``training`` carries only the points new since the last event (``"reset": false``); a new run comes with
``"reset": true`` and its points from the first.

The channel looks at the server every :data:`POLL_S` seconds and sends only what changed: a few attribute
reads per open page per look, so a class of thirty open pages costs nothing noticeable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from starlette.responses import StreamingResponse

from .state import Loaded, TrainingJob


class Watched(Protocol):
    """What the channel reads of the server (:class:`~pyflux_mnist.web.app.Server`)."""

    closing: bool
    loaded: Loaded
    job: TrainingJob | None


#: Seconds between two looks at the model and the training run.
POLL_S = 0.1
#: Seconds between two comments on an idle channel, so a proxy or the browser keeps it open.
KEEPALIVE_S = 15.0
IDLE = {"state": "idle", "running": False, "points": [], "next": 0, "reset": True}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def changes(
    server: Watched, card: Callable[[], dict[str, Any]], gone: Callable[[], Any]
) -> AsyncIterator[str]:
    """The events one page is sent: the present at once, then each change, until it goes or we close."""
    version: int | None = None
    job_id: int | None = None
    since, state = 0, None
    quiet = 0.0
    while not server.closing:
        sent = False
        if server.loaded.version != version:  # before the run's end, so `done` finds the new model there
            version = server.loaded.version
            yield sse("model", card())
            sent = True
        job = server.job
        if job is None:
            if job_id is None and state is None:
                state = "idle"
                yield sse("training", IDLE)
                sent = True
        else:
            reset = job.id != job_id
            if reset:
                job_id, since, state = job.id, 0, None
            snap = job.snapshot(since)
            if reset or snap["points"] or snap["state"] != state:
                since, state = snap["next"], snap["state"]
                yield sse("training", {**snap, "reset": reset})
                sent = True
        quiet = 0.0 if sent else quiet + POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": still here\n\n"
        if await gone():
            return
        await asyncio.sleep(POLL_S)


def stream(server: Watched, card: Callable[[], dict[str, Any]], gone: Callable[[], Any]) -> StreamingResponse:
    """The response for one page: ``card()`` makes the model's card, ``gone()`` says the page has left."""
    return StreamingResponse(
        changes(server, card, gone),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
