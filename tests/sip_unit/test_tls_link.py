"""tls_link.Link (issue 15 point 9, the outside review's points 1 and 4): one attempt for
everyone waiting, a hold-off that counts from the last real attempt, a lost connection
made again with a growing pause."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.sip.errors import SipError
from edge_agent.sip.tls_link import Link


class Peer:
    """An attempt that fails until `up`, taking `takes` seconds."""

    def __init__(self, takes: float = 0.0) -> None:
        self.takes = takes
        self.up = False
        self.open = False
        self.attempts: list[float] = []

    async def attempt(self) -> None:
        self.attempts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.takes)
        if not self.up:
            raise SipError("refused")
        self.open = True


async def test_everyone_waiting_shares_one_attempt_and_its_failure() -> None:
    peer = Peer(takes=0.2)
    link = Link(peer.attempt, lambda: peer.open)
    results = await asyncio.gather(*(link.connect() for _ in range(50)), return_exceptions=True)
    assert len(peer.attempts) == 1
    assert all(isinstance(r, SipError) for r in results)


async def test_the_hold_off_counts_from_the_last_real_attempt_not_from_each_refusal() -> None:
    """Before, each failure raised again inside the hold-off started it anew: a call
    every 0.3 s meant no attempt ever again."""
    peer = Peer()
    link = Link(peer.attempt, lambda: peer.open, hold_off_s=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 3.2:
        with pytest.raises(SipError):
            await link.connect()
        await asyncio.sleep(0.3)
    assert 3 <= len(peer.attempts) <= 4  # one a second, not one in all
    peer.up = True
    await asyncio.sleep(1.0)
    await link.connect()
    assert peer.open


async def test_a_lost_connection_is_made_again_at_once_then_with_a_growing_pause() -> None:
    peer = Peer()
    made: list[bool] = []
    link = Link(peer.attempt, lambda: peer.open, on_made=made.append, hold_off_s=0.0)
    link.keep_up()
    await asyncio.sleep(3.5)
    gaps = [b - a for a, b in zip(peer.attempts, peer.attempts[1:], strict=False)]
    assert len(peer.attempts) == 3, gaps  # at once, after 1 s, after 2 s
    assert gaps[0] == pytest.approx(1.0, abs=0.2) and gaps[1] == pytest.approx(2.0, abs=0.2)
    peer.up = True
    await asyncio.sleep(4.5)
    assert peer.open and made == [False]
    link.close()
