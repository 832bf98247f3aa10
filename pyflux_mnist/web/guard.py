"""The server's front door, as one ASGI middleware: who may talk to it and how much they may send.

* **Host** (DNS rebinding): a page on another site can make its own name resolve to 127.0.0.1, but the
  browser still sends that name in ``Host``; only the names this server was started for are answered.
* **Origin** (cross-site requests): a state-changing request (``POST`` ...) whose ``Origin`` is not this
  server, or that the browser marks ``Sec-Fetch-Site: cross-site``, is refused. Clients that send no
  ``Origin`` at all (curl, scripts) are not browsers acting for another site and are let through.
* **Size**: a body larger than :data:`MAX_BODY` is refused with 413, from ``Content-Length`` before it is
  read, or as soon as a streamed body passes the limit.

Every refusal is a JSON ``{"error": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body accepted: a 12-megapixel phone photo is 3 to 8 MB as JPEG.
MAX_BODY = 20 * 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit; its message is the 413's."""


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header values this server answers: the bound name with its port (loopback: any of
    the loopback names), plus ``extra`` names (a LAN address) when bound to every interface."""
    names = {host if ":" not in host else f"[{host}]"}
    if host in ("127.0.0.1", "localhost", "::1"):
        names.update(LOOPBACK_NAMES)
    names.update(extra)
    return frozenset(f"{n}:{port}".lower() for n in names)


async def send_json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware enforcing the Host, Origin and body-size rules above."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], max_body: int = MAX_BODY) -> None:
        self.app, self.hosts, self.max_body = app, hosts, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            await send_json(send, 421 if host else 400, f"this server does not answer for host {host!r}")
            return
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin.lower() != f"http://{host}":
                await send_json(send, 403, f"requests from {origin!r} are not accepted (other origin)")
                return
            if headers.get("sec-fetch-site") == "cross-site":
                await send_json(send, 403, "cross-site requests are not accepted")
                return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await send_json(send, 400, "bad Content-Length")
                return
            if int(length) > self.max_body:
                await send_json(send, 413, self._too_large())
                return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self._too_large())
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, self._too_large())

    def _too_large(self) -> str:
        return f"the upload is larger than the limit of {self.max_body // (1024 * 1024)} MB"
