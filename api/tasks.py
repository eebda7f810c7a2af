"""Wake-ups for the workers: a Dramatiq message named by its actor, sent after the commit.

The central service imports nothing of ``workers/``: it names the actor and
its queue (``workers/actors.py`` declares them; a test keeps both in step). A
lost wake-up costs a delay, never work: the row it points at is the queue and
the workers' sweeps find it. On the embedded default no broker joins the
processes, so nothing is sent and the worker's own sweeps do it all.
"""

from __future__ import annotations

import asyncio
import logging

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from api.settings import Settings

log = logging.getLogger(__name__)

# (queue, actor) of the workers' actors that the central service wakes.
SYNTHESIZE_ANNOUNCEMENT = ("tts", "synthesize_announcement")
SEND_MAIL = ("mail", "send_mail")


class Tasks:
    """No broker: the workers' sweeps find the work."""

    async def wake(self, target: tuple[str, str], *ids: str) -> None:
        return None

    def close(self) -> None:
        return None


class RedisTasks(Tasks):
    def __init__(self, redis_url: str, namespace: str) -> None:
        # Only enqueues: no middleware, no actors, no connection until the first message.
        self._broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=redis_url, namespace=namespace, middleware=[]
        )

    async def wake(self, target: tuple[str, str], *ids: str) -> None:
        queue, actor = target
        message: Message[None] = Message(
            queue_name=queue, actor_name=actor, args=ids, kwargs={}, options={}
        )
        try:
            await asyncio.to_thread(self._broker.enqueue, message)
        except redis.RedisError as exc:
            log.warning("wake-up for %s not sent (a sweep will find the work): %s", actor, exc)

    def close(self) -> None:
        self._broker.client.close()
        self._broker.client.connection_pool.disconnect()


def make_tasks(settings: Settings) -> Tasks:
    if settings.redis_url:
        return RedisTasks(settings.redis_url, settings.worker_namespace)
    return Tasks()
