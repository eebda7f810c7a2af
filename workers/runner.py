"""``rundruf worker`` and ``rundruf scheduler``: one process each.

Production runs M ``rundruf worker`` processes (each with N threads on one
event loop) and one ``rundruf scheduler``; Dramatiq's cookbook puts the
scheduler in a process of its own, and so do we: workers never schedule. The
embedded default has no Redis, so a separate scheduler would reach no worker:
there ``rundruf worker`` is the single process and runs the scheduler beside
its workers, still under a lease (a file lock) in case it is started twice.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq import Broker
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from api.bootstrap import bootstrap, configure_logging
from api.errors import ConfigurationError
from api.migrate import require_head
from api.settings import Settings
from workers.actors import Actors, WorkerContext, declare
from workers.broker import close_broker, make_broker, queue_depths
from workers.lease import FileLease, Lease, RedisLease
from workers.metrics import MetricsServer
from workers.scheduler import Job, Scheduler, tick_for

log = logging.getLogger(__name__)

LEASE_FILE = "scheduler.lock"


class _CloseContext(Middleware):
    """Closes the database pool on the event loop before Dramatiq stops that loop."""

    def __init__(self, context: WorkerContext) -> None:
        self._context = context

    def before_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        thread = get_event_loop_thread()
        if thread is not None:
            thread.run_coroutine(self._context.aclose())


def run_worker(settings: Settings, stop: threading.Event) -> None:
    """Works until ``stop`` is set; on the embedded default it also runs the scheduler."""
    require_head(settings)
    rt = bootstrap(settings)
    context = WorkerContext(rt)
    broker = make_broker(settings)
    actors = declare(broker, lambda: context)
    broker.add_middleware(_CloseContext(context))
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads)
    worker.start()
    log.info(
        "worker started: %d threads, %s broker",
        settings.worker_threads,
        "Redis" if settings.redis_url else "in-process",
    )
    metrics = _metrics(settings, broker, context)
    scheduler = None
    if not settings.redis_url:
        scheduler = threading.Thread(
            target=_scheduler(
                settings, actors, FileLease(settings.worker_state_dir / LEASE_FILE)
            ).run,
            args=(stop,),
            name="scheduler",
        )
        scheduler.start()
    try:
        stop.wait()
    finally:
        if scheduler is not None:
            scheduler.join()
        if metrics is not None:
            metrics.stop()
        worker.stop()
        close_broker(broker)
        log.info("worker stopped")


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    """Sends the periodic messages while holding the lease, until ``stop`` is set."""
    if not settings.redis_url:
        raise ConfigurationError(
            "`rundruf scheduler` needs RUNDRUF_REDIS_URL; on the embedded default "
            "`rundruf worker` schedules in its own process"
        )
    configure_logging(settings)
    broker = make_broker(settings)
    # The scheduler only sends; the actors are declared for their names and queues.
    actors = declare(broker, _no_context)
    assert isinstance(broker, RedisBroker)
    lease = RedisLease(
        broker.client,
        f"{settings.worker_namespace}:scheduler-lease",
        settings.scheduler_lease_seconds,
    )
    try:
        _scheduler(settings, actors, lease).run(stop)
    finally:
        close_broker(broker)


def _scheduler(settings: Settings, actors: Actors, lease: Lease) -> Scheduler:
    jobs = [
        Job("mail_sweep", settings.mail_sweep_seconds, actors.mail_sweep.send),
        Job("watchdog_sweep", settings.watchdog_sweep_seconds, actors.watchdog_sweep.send),
        Job("tts_sweep", settings.tts_sweep_seconds, actors.tts_sweep.send),
    ]
    return Scheduler(lease, jobs, tick=tick_for(settings.scheduler_lease_seconds, jobs))


def _no_context() -> WorkerContext:
    raise RuntimeError("the scheduler process runs no actors")


def _metrics(settings: Settings, broker: Broker, context: WorkerContext) -> MetricsServer | None:
    thread = get_event_loop_thread()
    if settings.worker_metrics_port is None or thread is None:
        return None
    server = MetricsServer(
        context.rt, context.counters, lambda: queue_depths(broker), settings.worker_metrics_port
    ).start(thread.loop)
    log.info("worker metrics on http://127.0.0.1:%d/metrics", server.port)
    return server
