"""The RTP side of an incoming call that a caller must not turn against us or others
(review of issue 16): `GuardedLeg`, the `MediaLeg` that `incoming_call.IncomingCall` is.

- Finding 5: our RTP goes only where it cannot be aimed at a third party: the SDP's
  address when it is the INVITE's source host or one the router trusts (the PBX's),
  else only once the caller's RTP came from there (symmetric RTP, the latch of
  `media_source.py`). Until then nothing is sent (`media_safe`); a prompt waits up to
  MEDIA_WAIT_S for it (`media_ready`).
- Finding 6: at most RTP_MAX_PER_S packets a second are looked at; the rest are dropped
  and counted before SRTP, the source check or parsing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from edge_agent.sip.media_leg import MediaLeg
from edge_agent.sip.peers import peer_key
from edge_agent.sip.transport import Address

__all__ = ["MEDIA_WAIT_S", "RTP_MAX_PER_S", "GuardedLeg"]

log = logging.getLogger(__name__)

# Packets a second looked at: G.711 is 50, RFC 4733 events 50 more while a key is held
# and 3 copies of its end; twice that leaves room for jitter bursts.
RTP_MAX_PER_S = 200
MEDIA_WAIT_S = 1.0  # a prompt waits this long for the caller's first RTP


class GuardedLeg(MediaLeg):
    """A `MediaLeg` whose RTP goes only to safe addresses and whose input is capped."""

    source: Address  # the INVITE's (set by the subclass)
    gone: asyncio.Event  # the call has ended (set by the subclass)

    def guard_media(self, media_trusted: Callable[[str], bool] | None) -> None:
        self._media_trusted = media_trusted  # hosts our RTP may go to unasked (the PBX's)
        self.unsafe_dropped = 0  # our RTP packets not sent: no safe address yet
        self.rtp_flooded = 0  # the caller's packets beyond RTP_MAX_PER_S, not looked at
        self._rtp_second = 0.0
        self._rtp_count = 0

    def media_safe(self) -> bool:
        """Whether our RTP may go where it would go now: to where the caller's RTP came
        from, to the INVITE's source host, or to a host the router trusts."""
        to = self.rtp_source.destination
        if to is None:
            return False
        if self.rtp_source.latched is not None:
            return True
        if peer_key(to[0]) == peer_key(self.source[0]):
            return True
        return self._media_trusted is not None and self._media_trusted(to[0])

    def on_rtp(self, data: bytes, source: Address) -> None:
        now = time.monotonic()
        if now - self._rtp_second >= 1.0:
            self._rtp_second, self._rtp_count = now, 0
        self._rtp_count += 1
        if self._rtp_count > RTP_MAX_PER_S:  # before SRTP, the source check, parsing
            self.rtp_flooded += 1
            if self.rtp_flooded == 1:  # once per call
                log.warning(
                    "incoming call %s: more than %d RTP packets a second; the rest dropped",
                    self.call_id,
                    RTP_MAX_PER_S,
                )
            return
        super().on_rtp(data, source)

    def send_rtp(self, packet: bytes) -> None:
        if not self.media_safe():  # never to a third party the SDP named
            self.unsafe_dropped += 1
            return
        super().send_rtp(packet)

    async def media_ready(self, within_s: float = MEDIA_WAIT_S) -> bool:
        """Waits up to `within_s` for `media_safe` (the caller's first RTP packet)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not self.media_safe():
            if loop.time() >= deadline or self.gone.is_set():
                return False
            await asyncio.sleep(0.02)
        return True
