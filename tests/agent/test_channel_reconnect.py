"""A dropped connection is made again at once (review A): a PBX command in progress
(minutes, at worst) finishes in the background, its replay on the next connection is
not run a second time, and an alarm sent meanwhile runs at once. On shutdown the
command in progress still finishes, as before."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from edge_agent.channel import CommandChannel
from edge_agent.config import Enrolment
from edge_agent.service import OWN_LANE
from edge_agent.settings import AgentSettings

SLOW = {"id": "slow", "type": "syncDirectory", "payload": {}, "secrets": {}}
ALARM = {"id": "alarm", "type": "triggerBroadcast", "payload": {}, "secrets": {}}


async def test_an_alarm_after_a_reconnect_does_not_wait_for_the_command_in_progress(
    tmp_path: Path,
) -> None:
    connections = 0

    async def server(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        assert json.loads(await ws.recv())["type"] == "connection_init"
        await ws.send(json.dumps({"type": "connection_ack"}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "subscribe":
                continue
            # The server replays what is not completed yet: the slow command too.
            for command in [SLOW] if first else [SLOW, ALARM]:
                data = {"data": {"agentCommands": command}}
                await ws.send(json.dumps({"id": message["id"], "type": "next", "payload": data}))
            if first:
                await asyncio.sleep(0.3)
                await ws.close()  # a network blip while the PBX command runs
                return

    release = asyncio.Event()
    alarm_ran = asyncio.Event()
    runs: list[str] = []

    async def sink(command: dict[str, Any]) -> None:
        runs.append(command["id"])
        if command["id"] == "slow":
            await release.wait()  # a PBX that takes its time
        else:
            alarm_ran.set()

    async with serve(server, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        enrolment = Enrolment(f"http://127.0.0.1:{port}", "installation", "token")
        settings = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path, backoff_cap_seconds=1)
        channel = CommandChannel(enrolment, settings, sink, own_lane=OWN_LANE)
        task = asyncio.create_task(channel.run_forever())
        try:
            await asyncio.wait_for(alarm_ran.wait(), 10)  # while "slow" still runs
            assert connections == 2 and not release.is_set()
            release.set()
            await asyncio.sleep(0.3)
            # Its replay on the second connection was not run a second time.
            assert sorted(runs) == ["alarm", "slow"]
        finally:
            release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_shutdown_waits_for_the_command_in_progress_then_ends(tmp_path: Path) -> None:
    async def server(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv())["type"] == "connection_init"
        await ws.send(json.dumps({"type": "connection_ack"}))
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "subscribe":
                data = {"data": {"agentCommands": SLOW}}
                await ws.send(json.dumps({"id": message["id"], "type": "next", "payload": data}))

    started, release = asyncio.Event(), asyncio.Event()

    async def sink(command: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    async with serve(server, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        enrolment = Enrolment(f"http://127.0.0.1:{port}", "installation", "token")
        settings = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path)
        task = asyncio.create_task(CommandChannel(enrolment, settings, sink).run_forever())
        try:
            await asyncio.wait_for(started.wait(), 10)
            task.cancel()
            await asyncio.sleep(0.2)
            assert not task.done()  # a command cut off would run again after the restart
            release.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
            assert task.cancelled()
        finally:
            release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
