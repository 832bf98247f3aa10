"""A shared allowance of bytes (and of concurrent holders) that requests wait for, briefly, or are refused.

The server holds two (issue 19): the request bodies in flight (:mod:`.guard`: 25 stalled 19.5 MB uploads
held 760 MB) and the memory of image decodes (:mod:`.app`: uploads were decoded six at a time, up to
1.7 GB each). A request whose share does not come within the wait is answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

#: Seconds a refused request is told to wait before trying again.
RETRY_AFTER_S = 5


class Busy(Exception):
    """The share did not come within the wait; the message is the 503's."""


class Budget:
    """``total`` bytes, held by at most ``count`` requests at once (None: any number).

    Used from one event loop; giving a share back never waits (a cancelled request still gives it back).
    """

    def __init__(self, total: int, count: int | None = None, what: str = "requests") -> None:
        self.total, self.count, self.what = total, count, what
        self.used = self.holders = 0
        self._waiters: list[asyncio.Future[None]] = []

    def _fits(self, need: int) -> bool:
        room = self.count is None or self.holders < self.count
        return room and (self.used + need <= self.total or self.holders == 0)

    @contextlib.asynccontextmanager
    async def hold(self, need: int, wait: float) -> AsyncIterator[None]:
        """Hold ``need`` bytes (a share larger than the total is held alone) for the ``with`` body."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self._fits(need):
            left = deadline - loop.time()
            if left <= 0:
                raise Busy(f"the server is busy with other {self.what}; try again in a few seconds")
            woken: asyncio.Future[None] = loop.create_future()
            self._waiters.append(woken)
            try:
                await asyncio.wait_for(woken, left)
            except TimeoutError:
                pass
            finally:
                self._waiters.remove(woken)
        self.used += need
        self.holders += 1
        try:
            yield
        finally:
            self.used -= need
            self.holders -= 1
            for w in self._waiters:
                if not w.done():
                    w.set_result(None)
