"""The server's front door, as one ASGI middleware: who may talk to it and how much they may send.

* **Host** (DNS rebinding): a page on another site can make its own name resolve to 127.0.0.1, but the
  browser still sends that name in ``Host``; only the names this server was started for are answered.
* **Origin** (cross-site requests): a state-changing request (``POST`` ...) whose ``Origin`` is not this
  server, or that the browser marks ``Sec-Fetch-Site: cross-site``, is refused. Clients that send no
  ``Origin`` at all (curl, scripts) are not browsers acting for another site and are let through.
* **Size**: a body larger than :data:`MAX_BODY` is refused with 413, from ``Content-Length`` before it is
  read, or as soon as a streamed body passes the limit.
* **Bodies in flight** (issue 19): all requests' bodies together hold at most :data:`MAX_BODIES` (a body's
  share is its ``Content-Length``, or :data:`MAX_BODY` when it has none, until its response is sent); past
  that a request waits up to :data:`BODY_WAIT_S`, then gets 503 with ``Retry-After``. A body must keep
  coming: no byte for :data:`BODY_IDLE_S`, or not complete after :data:`BODY_TOTAL_S`, is a 408.
* **Framing** (clickjacking): every response says ``X-Frame-Options: DENY`` and carries :data:`CSP`.

Every refusal is a JSON ``{"error": "..."}`` with a 4xx status (503 for "busy, try again").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .budget import RETRY_AFTER_S, Budget, Busy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body accepted: a 12-megapixel phone photo is 3 to 8 MB as JPEG.
MAX_BODY = 20 * 1024 * 1024
#: All bodies in flight together: three full-size uploads, or a classroom's worth of phone photos.
MAX_BODIES = 3 * MAX_BODY
#: Seconds a request waits for room among the bodies in flight before a 503.
BODY_WAIT_S = 5.0
#: A body that sends nothing for this long, or is not complete after the second, is cut off (408); 20 MB
#: at 200 kB/s (a poor classroom Wi-Fi) takes 100 s.
BODY_IDLE_S = 20.0
BODY_TOTAL_S = 180.0
#: The page's own script, styles and fonts, same-origin requests (fetch, EventSource), pictures from the
#: server and as data:/blob: URLs; no plugins, no framing by anyone. Inline styles stay allowed (a page
#: script's ``style`` attributes): they cannot run code.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Sent with every response.
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit; its message is the 413's."""


class BodyTooSlow(Exception):
    """Raised inside ``receive`` when a body stops coming; its message is the 408's."""


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header values this server answers: the bound name with its port (loopback: any of
    the loopback names), plus ``extra`` names (a LAN address) when bound to every interface."""
    names = {host if ":" not in host else f"[{host}]"}
    if host in ("127.0.0.1", "localhost", "::1"):
        names.update(LOOPBACK_NAMES)
    names.update(extra)
    return frozenset(f"{n}:{port}".lower() for n in names)


async def send_json(
    send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware enforcing the Host, Origin, body-size, bodies-in-flight and framing rules above."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: frozenset[str],
        max_body: int = MAX_BODY,
        bodies: Budget | None = None,
        idle_s: float = BODY_IDLE_S,
        total_s: float = BODY_TOTAL_S,
    ) -> None:
        self.app, self.hosts, self.max_body = app, hosts, max_body
        self.bodies = bodies or Budget(MAX_BODIES, what="uploads")
        self.idle_s, self.total_s = idle_s, total_s

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
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        share = int(length) if length is not None else (self.max_body if chunked else 0)
        try:
            async with self.bodies.hold(share, BODY_WAIT_S):
                await self._answer(scope, receive, send)
        except Busy as e:
            await send_json(send, 503, str(e), [(b"retry-after", str(RETRY_AFTER_S).encode())])

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_s
        received = 0
        body_done = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive waits for the disconnect: no deadline then
                return await receive()
            wait = min(self.idle_s, deadline - loop.time())
            try:
                message = await asyncio.wait_for(receive(), max(wait, 0))
            except TimeoutError:
                raise BodyTooSlow(self._too_slow()) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self._too_large())
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, self._too_large())
        except BodyTooSlow:
            if not started:
                await send_json(send, 408, self._too_slow(), [(b"connection", b"close")])

    def _too_large(self) -> str:
        return f"the upload is larger than the limit of {self.max_body // (1024 * 1024)} MB"

    def _too_slow(self) -> str:
        return (
            f"the upload stopped coming (nothing for {self.idle_s:g} s, or not complete after "
            f"{self.total_s:g} s)"
        )
