"""The agent's token on the WebSocket handshake as well as in connection_init
(issue 14, point 6, review point 3): the server then counts the socket as signed
in at once, and sockets from the same address that never sign in cannot push it
out before its connection_init is read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from edge_agent.channel import CommandChannel
from edge_agent.config import Enrolment
from edge_agent.settings import AgentSettings


async def test_the_channel_sends_its_token_on_the_handshake_too(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def server(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["header"] = ws.request.headers.get("Authorization")
        seen["init"] = json.loads(await ws.recv())
        done.set()
        await ws.wait_closed()

    async def sink(command: dict[str, Any]) -> None:
        return None

    async with serve(server, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        enrolment = Enrolment(f"http://127.0.0.1:{port}", "installation", "rda_secret")
        settings = AgentSettings(pbx="sim", dialer="sim", state_dir=tmp_path)
        task = asyncio.create_task(CommandChannel(enrolment, settings, sink).run_forever())
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert seen["header"] == "Bearer rda_secret"
    assert seen["init"] == {
        "type": "connection_init",
        "payload": {"authorization": "Bearer rda_secret"},
    }
