"""Wake-up messages between processes: ids only, at most once.

Nothing may depend on receiving every message: the database is the truth and
every listener also looks there on its own schedule. A process keeps one local
hub of subscribers; with Redis, one connection per process carries every
channel (a pattern subscription) into that hub, so 10,000 WebSockets do not mean
10,000 Redis connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable

log = logging.getLogger(__name__)

PREFIX = "rundruf:"
# A slow consumer loses wake-ups rather than holding memory; it rereads the database.
INBOX_SIZE = 256


class Inbox:
    """Messages for one subscriber; ``get`` waits until one arrives or the timeout passes."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(INBOX_SIZE)

    def put(self, channel: str, message: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((channel, message))

    async def get(self, wait: float) -> tuple[str, str] | None:
        try:
            async with asyncio.timeout(wait):
                return await self._queue.get()
        except TimeoutError:
            return None

    def drain(self) -> list[tuple[str, str]]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items


class Hub:
    """Local fan-out; ``publish`` reaches this process only (see RedisHub for all)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Inbox]] = defaultdict(set)

    def deliver(self, channel: str, message: str) -> None:
        for inbox in list(self._subscribers.get(channel, ())):
            inbox.put(channel, message)

    async def publish(self, channel: str, message: str) -> None:
        self.deliver(channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channels: Iterable[str]) -> AsyncIterator[Inbox]:
        inbox = Inbox()
        names = list(channels)
        for name in names:
            self._subscribers[name].add(inbox)
        try:
            yield inbox
        finally:
            for name in names:
                subscribers = self._subscribers.get(name)
                if subscribers is not None:
                    subscribers.discard(inbox)
                    if not subscribers:
                        del self._subscribers[name]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def subscriber_count(self) -> int:
        return len({id(i) for subs in self._subscribers.values() for i in subs})


class RedisHub(Hub):
    """Publishes through Redis; one pattern subscription feeds the local hub."""

    def __init__(self, url: str) -> None:
        super().__init__()
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def publish(self, channel: str, message: str) -> None:
        try:
            await self._redis.publish(PREFIX + channel, message)
        except Exception:  # a lost wake-up is allowed; the database is the truth
            log.warning("redis publish failed; delivering locally only", exc_info=True)
            self.deliver(channel, message)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="redis-hub")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(PREFIX + "*")
                    self._ready.set()
                    delay = 0.5
                    async for item in pubsub.listen():
                        if item.get("type") != "pmessage":
                            continue
                        channel = item["channel"].decode().removeprefix(PREFIX)
                        self.deliver(channel, item["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception:  # reconnect; listeners poll the database meanwhile
                log.warning("redis subscription lost; reconnecting in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()


def make_hub(redis_url: str | None) -> Hub:
    return RedisHub(redis_url) if redis_url else Hub()


# Channel names, in one place.
def tenant_commands(tenant_id: object) -> str:
    return f"tenant:{tenant_id}:commands"


def tenant_events(tenant_id: object) -> str:
    return f"tenant:{tenant_id}:events"


def installation_control(installation_id: object) -> str:
    return f"installation:{installation_id}:control"
