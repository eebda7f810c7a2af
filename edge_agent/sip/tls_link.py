"""The connection to one TLS peer (the PBX), as the agent keeps it: made once for all
who wait for it, not tried again for a while after it failed, made again when lost.

Before (issue 15 point 9, the outside review): every call waiting for the first
connection made its own handshake, one after the other (100 calls, 100 handshakes; with
a PBX that stalls its handshake the last of 5 calls ended after 10 s); a failure raised
again within the hold-off started the hold-off anew, so while calls kept coming nothing
was ever tried again; and nothing made a lost connection again.

`Link(attempt, is_open)`:

- `connect()` returns once the connection is open: it joins the attempt under way or
  starts one; within `hold_off_s` after an attempt failed it raises that failure at
  once, without an attempt. The hold-off counts from the end of the last real attempt,
  never from a failure raised again;
- `keep_up()` makes a lost connection again in the background, at once and then after
  1, 2, 4 ... `RECONNECT_MAX_S` s while it fails, until it is open (or a send made it);
- `on_failed(failure)` hears of each real attempt that failed, `on_made(again)` of each
  that succeeded (`again`: a connection was made before, this one replaces it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from edge_agent.sip.errors import SipError

log = logging.getLogger(__name__)

HOLD_OFF_S = 1.0  # after a failed attempt, what waits within this time fails the same way
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0


class Link:
    def __init__(
        self,
        attempt: Callable[[], Awaitable[None]],
        is_open: Callable[[], bool],
        *,
        on_failed: Callable[[SipError], None] = lambda _: None,
        on_made: Callable[[bool], None] = lambda _: None,
        hold_off_s: float = HOLD_OFF_S,
    ) -> None:
        self._attempt = attempt
        self.is_open = is_open
        self._on_failed = on_failed
        self._on_made = on_made
        self.hold_off_s = hold_off_s
        self._trying: asyncio.Future[None] | None = None
        self._failure: tuple[float, SipError] | None = None  # the last real failure, when
        self._made = False
        self._keeping: asyncio.Task[None] | None = None
        self._closed = False
        self.attempts = 0  # real attempts made, for tests and figures

    def remembered(self) -> SipError | None:
        """The last attempt's failure while its hold-off lasts, else None."""
        if self._failure is None or self.hold_off_left() <= 0:
            return None
        return self._failure[1]

    def hold_off_left(self) -> float:
        if self._failure is None:
            return 0.0
        return self._failure[0] + self.hold_off_s - asyncio.get_running_loop().time()

    def remember(self, failure: SipError) -> None:
        """A failure found outside an attempt (the PBX refused us just after the
        handshake): what waits within the hold-off fails the same way."""
        self._failure = (asyncio.get_running_loop().time(), failure)

    async def connect(self) -> None:
        """Returns once connected; raises the attempt's failure (a SipError), or the
        remembered one within its hold-off."""
        if self.is_open():
            return
        if self._trying is None:
            remembered = self.remembered()
            if remembered is not None:
                raise remembered
            self._trying = asyncio.ensure_future(self._try())
            # Read by whoever awaits it; an attempt nobody waits for any more is no error.
            self._trying.add_done_callback(lambda f: f.cancelled() or f.exception())
        await asyncio.shield(self._trying)

    async def _try(self) -> None:
        self.attempts += 1
        try:
            await self._attempt()
        except SipError as failure:
            self._failure = (asyncio.get_running_loop().time(), failure)
            self._on_failed(failure)
            raise
        else:
            self._failure = None
            again, self._made = self._made, True
            self._on_made(again)
        finally:
            self._trying = None

    def keep_up(self) -> None:
        """Makes the connection again in the background unless that is under way."""
        if self._closed or (self._keeping is not None and not self._keeping.done()):
            return
        self._keeping = asyncio.create_task(self._keep_up(), name="tls-reconnect")

    async def _keep_up(self) -> None:
        delay = 0.0
        while not self._closed and not self.is_open():
            wait = max(delay, self.hold_off_left())
            if wait > 0:
                await asyncio.sleep(wait)
                if self._closed or self.is_open():
                    return
            try:
                await self.connect()
            except SipError:
                delay = min(max(RECONNECT_FIRST_S, delay * 2), RECONNECT_MAX_S)
            else:
                return

    def close(self) -> None:
        self._closed = True
        for work in (self._keeping, self._trying):
            if work is not None and not work.done():
                work.cancel()
