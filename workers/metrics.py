"""``GET /metrics`` of a worker process: the API's endpoint and gauges plus the worker's own.

The endpoint (bearer token, 404 without ``RUNDRUF_METRICS_TOKEN``) and the
database's gauges (outbox by status, incidents, …) are ``api.http.metrics`` and
``api.metrics``; a worker adds its mail counters (this process's since it
started; Prometheus sums the processes) and the depth of each queue, read from
the broker when scraped. It is served by Uvicorn on the worker's event loop
thread, bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from api.http.metrics import endpoint
from api.metrics import Metric
from api.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class MailCounters:
    sent: int = 0
    failed: int = 0  # for good: permanent error or out of attempts
    retried: int = 0  # temporary errors, queued again
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, sent: int = 0, failed: int = 0, retried: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.failed += failed
            self.retried += retried


def worker_metrics(counters: MailCounters, queue_depth: Mapping[str, int]) -> list[Metric]:
    return [
        Metric(
            "rundruf_worker_mails_sent_total",
            "Mails the SMTP server accepted, sent by this worker process.",
            [({}, counters.sent)],
            type="counter",
        ),
        Metric(
            "rundruf_worker_mails_failed_total",
            "Mails this worker process gave up (permanent error or last attempt).",
            [({}, counters.failed)],
            type="counter",
        ),
        Metric(
            "rundruf_worker_mails_retried_total",
            "Temporary SMTP errors this worker process met; the mail waits and goes again.",
            [({}, counters.retried)],
            type="counter",
        ),
        Metric(
            "rundruf_worker_queue_depth",
            "Messages in a worker queue, waiting or being worked on (delayed ones included).",
            [({"queue": name}, depth) for name, depth in sorted(queue_depth.items())],
        ),
    ]


class MetricsServer:
    """Uvicorn on the given event loop (the worker's), answering ``GET /metrics`` only."""

    def __init__(
        self,
        rt: Runtime,
        counters: MailCounters,
        queue_depth: Callable[[], Mapping[str, int]],
        port: int,
    ) -> None:
        async def extra() -> list[Metric]:
            depths = await asyncio.to_thread(queue_depth)
            return worker_metrics(counters, depths)

        app = Starlette(routes=[Route("/metrics", endpoint(rt, extra))])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
        )
        self.port = port
        self._server = uvicorn.Server(config)
        self._serving: Future[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> MetricsServer:
        # Off the main thread, Uvicorn installs no signal handlers: the worker keeps its own.
        self._serving = asyncio.run_coroutine_threadsafe(self._server.serve(), loop)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._serving is not None:
            self._serving.result(timeout=10)
