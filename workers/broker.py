"""The Dramatiq broker: Redis in production, in-process on the embedded default.

Messages carry ids only; the database is the truth. Losing a message costs a
delay until the next sweep, never a mail or an incident.
"""

from __future__ import annotations

from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, default_middleware

from api.settings import Settings


def make_broker(settings: Settings) -> Broker:
    """A broker for these settings; nothing connects until it is used."""
    # AsyncIO runs every async actor on one event loop thread per process.
    middleware = [m() for m in default_middleware] + [AsyncIO()]
    if settings.redis_url:
        return RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.redis_url, namespace=settings.worker_namespace, middleware=middleware
        )
    return StubBroker(middleware=middleware)


def queue_depths(broker: Broker) -> dict[str, int]:
    """Messages waiting or being worked on, per declared queue (delayed ones included)."""
    depths: dict[str, int] = {}
    for name in sorted(n for n in broker.get_declared_queues() if not n.endswith(".DQ")):
        if isinstance(broker, RedisBroker):
            depths[name] = int(broker.do_qsize(name))
        elif isinstance(broker, StubBroker):
            depths[name] = broker.queues[name].qsize() + broker.queues[f"{name}.DQ"].qsize()
    return depths


def close_broker(broker: Broker) -> None:
    broker.close()
    if isinstance(broker, RedisBroker):
        broker.client.close()
        broker.client.connection_pool.disconnect()
