"""The trunk's channels, shared by every broadcast of the agent; alarm calls go first."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Channels:
    """A counting semaphore whose waiters are served urgent first, then in arrival order.

    `in_use` and `peak` let tests and benchmarks check the limit holds.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a channel limit must be at least 1")
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def slot(self, urgent: bool) -> AsyncIterator[None]:
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (0 if urgent else 1, next(self._order), waiter))
            try:
                await waiter  # a releasing call hands its channel over: in_use stays
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed over just before the cancel: pass it on
                raise
        self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_use -= 1
