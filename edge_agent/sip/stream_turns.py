"""One budget of time per loop pass for all of a transport's SIP streams, and turns for
the streams that had to stop (issue 15, review of point 5).

A stream's read hands up every message it holds; one read of 256 KiB of pipelined small
requests was 700 messages and 300 ms on the loop, the RTP pacer waiting behind it. So
the streams of a transport share `budget_s` of work per loop pass (the UDP socket's
2 ms, `udp.UdpSocket`): a stream that finds it spent stops reading (`pause_reading`) and
queues here; the next pass starts with a new budget and serves the queue in turn (the
one stopped first goes first), before that pass's reads and timers. The pacer's timer
so waits about one budget and one message behind SIP, however many connections talk.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

BUDGET_S = 0.002  # as the UDP socket's (transport.DRAIN_BUDGET_S)


class Waiting(Protocol):
    """A stream with work left: `go_on()` does what the new budget allows."""

    def go_on(self) -> None: ...


class Turns:
    """The budget of the current loop pass, and the streams waiting for the next."""

    def __init__(
        self, budget_s: float = BUDGET_S, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget_s = budget_s
        self._clock = clock
        self._until: float | None = None  # the end of this pass's budget; None: unopened
        self._queue: deque[Waiting] = deque()
        self.deferred = 0  # how often a stream had to wait for the next pass

    def spent(self) -> bool:
        """Whether this pass's budget is used up; the first asking opens it."""
        if self._until is None:
            self._until = self._clock() + self.budget_s
            # Runs first in the next pass (ready callbacks before that pass's reads).
            asyncio.get_running_loop().call_soon(self._next_pass)
        return self._clock() > self._until

    def wait(self, stream: Waiting) -> None:
        """`stream` goes on in a later pass (it has stopped reading meanwhile)."""
        self.deferred += 1
        if stream not in self._queue:
            self._queue.append(stream)
        if self._until is None:
            self.spent()  # opens the pass, so that the next one comes

    def forget(self, stream: Waiting) -> None:
        """A closed stream's turn is dropped."""
        if stream in self._queue:
            self._queue.remove(stream)

    def _next_pass(self) -> None:
        self._until = None
        queue = self._queue
        for _ in range(len(queue)):
            if not queue or self.spent():
                break  # the rest keep their places for the next pass
            queue.popleft().go_on()  # queues itself again at the end if it has to wait
