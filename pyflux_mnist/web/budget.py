"""A shared allowance of bytes (and of concurrent holders) that requests wait for, briefly, or are refused.

The server holds two (issue 19): the request bodies in flight (:mod:`.guard`: 25 stalled 19.5 MB uploads
held 760 MB) and the memory of image decodes (:mod:`.app`: uploads were decoded six at a time, up to
1.7 GB each). A request whose share does not come within the wait is answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

#: Seconds a refused request is told to wait before trying again.
RETRY_AFTER_S = 5
#: Seconds between two looks at a full budget by a waiting request.
POLL_S = 0.05


class Busy(Exception):
    """The share did not come within the wait; the message is the 503's."""


class Budget:
    """``total`` bytes, held by at most ``count`` holders at once (None: any number).

    Taken and given back from any thread: a decode gives its share back in its own worker thread when it
    ends, so a client that goes away cannot free a share whose work is still running. Waiting is a poll
    on the event loop (only under contention); giving back never waits.
    """

    def __init__(self, total: int, count: int | None = None, what: str = "requests") -> None:
        self.total, self.count, self.what = total, count, what
        self.used = self.holders = 0
        self._lock = threading.Lock()

    def try_take(self, need: int) -> bool:
        """Take ``need`` bytes now if they fit (a share larger than the total fits alone)."""
        with self._lock:
            room = self.count is None or self.holders < self.count
            if not (room and (self.used + need <= self.total or self.holders == 0)):
                return False
            self.used += need
            self.holders += 1
            return True

    def give_back(self, need: int) -> None:
        with self._lock:
            self.used -= need
            self.holders -= 1

    async def take(self, need: int, wait: float) -> None:
        """Take ``need`` bytes, waiting up to ``wait`` seconds; :class:`Busy` if they never fit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self.try_take(need):
            if loop.time() >= deadline:
                raise Busy(f"the server is busy with other {self.what}; try again in a few seconds")
            await asyncio.sleep(POLL_S)

    @contextlib.asynccontextmanager
    async def hold(self, need: int, wait: float) -> AsyncIterator[None]:
        """:meth:`take`, given back when the ``with`` body ends (cancelled or not)."""
        await self.take(need, wait)
        try:
            yield
        finally:
            self.give_back(need)
