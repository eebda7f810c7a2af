"""The trunk's channels: a limit shared by all broadcasts, alarm calls served first."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.broadcast.channels import Channels


async def _hold(
    channels: Channels, urgent: bool, order: list[str], name: str, gate: asyncio.Event
) -> None:
    async with channels.slot(urgent):
        order.append(name)
        await gate.wait()


async def test_no_more_calls_than_channels_run_at_once() -> None:
    channels = Channels(3)
    gate = asyncio.Event()
    order: list[str] = []
    tasks = [asyncio.create_task(_hold(channels, False, order, str(i), gate)) for i in range(10)]
    await asyncio.sleep(0.01)
    assert (channels.in_use, len(order)) == (3, 3)
    gate.set()
    await asyncio.gather(*tasks)
    assert (channels.in_use, channels.peak, len(order)) == (0, 3, 10)


async def test_a_waiting_alarm_call_goes_before_waiting_test_calls() -> None:
    channels = Channels(1)
    gate = asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(_hold(channels, False, order, "test-1", gate))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(_hold(channels, False, order, "test-2", gate)),
        asyncio.create_task(_hold(channels, False, order, "test-3", gate)),
    ]
    await asyncio.sleep(0)
    alarm = asyncio.create_task(_hold(channels, True, order, "alarm", gate))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, alarm, *waiting)
    assert order == ["test-1", "alarm", "test-2", "test-3"]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    channels = Channels(1)
    gate = asyncio.Event()
    order: list[str] = []
    holder = asyncio.create_task(_hold(channels, False, order, "a", gate))
    await asyncio.sleep(0)
    gone = asyncio.create_task(_hold(channels, True, order, "gone", gate))
    later = asyncio.create_task(_hold(channels, False, order, "b", gate))
    await asyncio.sleep(0.01)
    gone.cancel()
    gate.set()
    await asyncio.gather(holder, later)
    assert order == ["a", "b"] and channels.in_use == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Channels(0)
