"""The one outbound WebSocket: graphql-transport-ws, the `agentCommands` stream.

Reconnects forever with exponential backoff and full jitter (AWS architecture
blog, "Exponential Backoff And Jitter"), so that a thousand agents cut off by a
server restart do not all come back in the same second. The agent pings at the
protocol level and treats a missing pong as a dead connection; the WebSocket
library pings at the frame level too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from edge_agent.command_clock import RECEIVED_AT
from edge_agent.config import Enrolment
from edge_agent.errors import ServerRefused
from edge_agent.settings import AgentSettings

log = logging.getLogger(__name__)

PROTOCOL = Subprotocol("graphql-transport-ws")
AGENT_COMMANDS = (
    "subscription { agentCommands { id type payload secrets createdAt expiresAt serverTime } }"
)
# For a central service older than `serverTime`: the command's times are then taken as sent.
AGENT_COMMANDS_WITHOUT_SERVER_TIME = (
    "subscription { agentCommands { id type payload secrets createdAt expiresAt } }"
)
# Close codes that mean "do not come back with this token".
REFUSED_CODES = {4403, 4401}
BACKOFF_BASE = 1.0
# A connection that lived this long resets the backoff to its start.
STABLE_AFTER = 60.0

CommandSink = Callable[[dict[str, Any]], Awaitable[None]]


def full_jitter(attempt: int, cap: float, base: float = BACKOFF_BASE) -> float:
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - not cryptographic


def bad_frame(raw: str | bytes, exc: ValueError) -> str:
    """A frame that is not JSON, named by its size and where it broke: never its content,
    which may hold a command's secrets (issue 14, point 5)."""
    where = f" at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
    return f"a frame of {len(raw)} characters that is not JSON ({type(exc).__name__}{where})"


class CommandChannel:
    def __init__(
        self,
        enrolment: Enrolment,
        settings: AgentSettings,
        sink: CommandSink,
        own_lane: frozenset[str] = frozenset(),
    ) -> None:
        self.enrolment = enrolment
        self.settings = settings
        self.sink = sink
        # Command types that run on a second lane, beside the others and in their own
        # order: an alarm trigger never waits behind a slow PBX command.
        self.own_lane = own_lane
        self.connected = asyncio.Event()
        self.query = AGENT_COMMANDS
        # The lanes (the others, then own_lane) outlive a connection: a command in
        # progress when it drops (a PBX command, up to minutes) finishes meanwhile and
        # reports its outcome its own way (outcomes.py), while the next connection is
        # made at once, so a new alarm is not held up by it (review A).
        self._lanes: tuple[asyncio.Queue[dict[str, Any]], ...] = (asyncio.Queue(), asyncio.Queue())
        # Ids of the commands in progress: their replay on the next connection is dropped,
        # so a command never runs twice (the ledger only knows it once it has finished).
        self._running: set[str] = set()

    async def run_forever(self) -> None:
        # Commands run one by one, in order, on each lane while the channel keeps reading.
        workers = [asyncio.create_task(self._work(lane)) for lane in self._lanes]
        try:
            await self._connect_forever()
        finally:
            self._drop_waiting()
            # On shutdown those in progress finish, as before (a command cut off in the
            # middle would run again after the restart); a second cancel stops them.
            try:
                for lane in self._lanes:
                    await lane.join()
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def _drop_waiting(self) -> None:
        """Commands not yet started wait for the next connection's replay."""
        for lane in self._lanes:
            while not lane.empty():
                lane.get_nowait()
                lane.task_done()

    async def _connect_forever(self) -> None:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except ServerRefused:
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                log.warning("connection to %s lost: %r", self.enrolment.graphql_ws, exc)
            finally:
                self.connected.clear()
            if time.monotonic() - started > STABLE_AFTER:
                attempt = 0
            delay = full_jitter(attempt, self.settings.backoff_cap_seconds)
            attempt += 1
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        ssl_context: Any = None
        if self.enrolment.graphql_ws.startswith("wss://") and not self.settings.verify_tls:
            import ssl

            ssl_context = ssl.create_default_context()
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        async with connect(
            self.enrolment.graphql_ws,
            subprotocols=[PROTOCOL],
            ping_interval=self.settings.ping_interval_seconds,
            ping_timeout=self.settings.ping_timeout_seconds,
            open_timeout=15,
            # A connection found dead gets no long close handshake.
            close_timeout=2,
            max_size=1024 * 1024,
            ssl=ssl_context,
            # Also on the handshake: the server then counts this socket as signed in
            # at once, so sockets from the same address that never sign in cannot
            # push it out before its connection_init is read.
            additional_headers={"Authorization": f"Bearer {self.enrolment.token}"},
        ) as ws:
            await self._init(ws)
            await self._subscribe(ws)
            self.connected.set()
            log.info("connected to %s", self.enrolment.graphql_ws)
            await self._receive(ws)

    def _no_server_time(self, message: dict[str, Any]) -> bool:
        """The server refused the subscription for the `serverTime` field it lacks."""
        return self.query is AGENT_COMMANDS and "serverTime" in json.dumps(message.get("payload"))

    async def _subscribe(self, ws: ClientConnection) -> None:
        subscribe = {"id": "commands", "type": "subscribe", "payload": {"query": self.query}}
        await ws.send(json.dumps(subscribe))

    async def _init(self, ws: ClientConnection) -> None:
        payload = {"authorization": f"Bearer {self.enrolment.token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        try:
            async with asyncio.timeout(15):
                message = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in REFUSED_CODES:
                raise ServerRefused(f"the server refused this agent: {exc.rcvd.reason}") from None
            raise
        if message.get("type") != "connection_ack":
            raise ConnectionClosed(None, None)

    async def _receive(self, ws: ClientConnection) -> None:
        queue, fast = self._lanes
        pong = asyncio.Event()
        pinger = asyncio.create_task(self._ping(ws, pong))
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError as exc:
                    log.warning("dropped %s", bad_frame(raw, exc))
                    continue
                kind = message.get("type")
                if kind == "next":
                    data = (message.get("payload") or {}).get("data") or {}
                    command = data.get("agentCommands")
                    if command and str(command.get("id")) in self._running:
                        log.info("command %s still runs: its outcome follows", command.get("id"))
                    elif command:
                        # Stamped at once: a command queued behind others ages meanwhile.
                        command = {**command, RECEIVED_AT: datetime.now(UTC)}
                        lane = fast if command.get("type") in self.own_lane else queue
                        lane.put_nowait(command)
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "pong":
                    pong.set()
                elif kind == "error" and self._no_server_time(message):
                    # An older central service: subscribed again without the field.
                    log.warning("the server does not send its clock: command times taken as sent")
                    self.query = AGENT_COMMANDS_WITHOUT_SERVER_TIME
                    await self._subscribe(ws)
                elif kind == "error":
                    raise ServerRefused(f"the server refused the subscription: {message}")
                elif kind == "complete":
                    return
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in REFUSED_CODES:
                raise ServerRefused(
                    f"the server closed the connection: {exc.rcvd.reason}"
                ) from None
            raise
        finally:
            pinger.cancel()
            # Those in progress go on in the background: the next connection is not
            # made to wait for them.
            self._drop_waiting()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _work(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            command = await queue.get()
            command_id = str(command.get("id"))
            self._running.add(command_id)
            try:
                await self.sink(command)
            except Exception:  # one bad command must not stop the stream
                log.exception("command %s failed", command_id)
            finally:
                self._running.discard(command_id)
                queue.task_done()

    async def _ping(self, ws: ClientConnection, pong: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_seconds)
            pong.clear()
            await ws.send(json.dumps({"type": "ping"}))
            try:
                async with asyncio.timeout(self.settings.ping_timeout_seconds):
                    await pong.wait()
            except TimeoutError:
                log.warning(
                    "no pong within %.0f s: the connection is dead",
                    self.settings.ping_timeout_seconds,
                )
                await ws.close(1011, "no pong")
                return
