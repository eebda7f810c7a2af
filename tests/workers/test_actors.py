"""The actors through a real Dramatiq worker on Redis, and the names the API wakes them by."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker

from api import tasks
from api.app import create_app
from api.bootstrap import bootstrap
from api.models import Announcement, AnnouncementStatus, EmailStatus
from api.runtime import Runtime
from api.tasks import RedisTasks
from tests.conftest import GraphQL, make_settings
from tests.workers.conftest import REDIS_URL, email_row, queue_mails
from tests.workers.smtp_sink import SmtpServer
from tests.workers.test_tts_synthesis import GERMAN, request
from workers.actors import WorkerContext, declare
from workers.broker import close_broker, make_broker


def test_the_api_wakes_actors_by_the_names_and_queues_the_workers_declare():
    broker = StubBroker()
    declare(broker, lambda: pytest.fail("nothing runs here"))
    for queue, name in (tasks.SYNTHESIZE_ANNOUNCEMENT, tasks.SEND_MAIL):
        assert broker.get_actor(name).queue_name == queue


def test_a_mail_batch_is_not_cut_by_dramatiqs_time_limit_before_its_worst_case():
    broker = StubBroker()
    actors = declare(broker, lambda: pytest.fail("nothing runs here"))
    s = make_settings()
    worst_ms = s.mail_batch_size * 4 * s.smtp_timeout_seconds * 1000
    for actor in (actors.send_mail, actors.mail_sweep):
        assert actor.options["time_limit"] > worst_ms


@dataclasses.dataclass
class RunningWorker:
    broker: dramatiq.Broker
    worker: dramatiq.Worker

    def drain(self) -> None:
        for queue in ("tts", "mail"):
            self.broker.join(queue, timeout=120_000)  # type: ignore[attr-defined]
        self.worker.join()


@pytest.fixture
def running_worker(namespace: str, smtp: SmtpServer, tmp_path) -> Iterator[RunningWorker]:
    """A Dramatiq worker in this process, on Redis, with its own runtime on its own loop."""
    settings = make_settings(
        redis_url=REDIS_URL,
        worker_namespace=namespace,
        smtp_port=smtp.port,
        worker_state_dir=tmp_path / "state",
    )
    context = WorkerContext(bootstrap(settings))
    broker = make_broker(settings)
    declare(broker, lambda: context)
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        yield RunningWorker(broker, worker)
    finally:
        from dramatiq.asyncio import get_event_loop_thread

        thread = get_event_loop_thread()
        assert thread is not None
        thread.run_coroutine(context.aclose())
        worker.stop()
        close_broker(broker)


async def test_a_synthesis_asked_for_in_graphql_wakes_the_tts_actor_which_speaks_it(
    rt: Runtime, world, namespace: str, running_worker: RunningWorker
):
    woken = dataclasses.replace(rt, tasks=RedisTasks(REDIS_URL, namespace))
    transport = httpx.ASGITransport(app=create_app(woken), client=("198.51.100.7", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            ann_id = await request(GraphQL(c), world, GERMAN)
        await asyncio.to_thread(running_worker.drain)
    finally:
        woken.tasks.close()

    async with rt.db.reading() as session:
        ann = await session.get_one(Announcement, ann_id)
    assert ann.status is AnnouncementStatus.READY
    assert ann.telephony_id is not None


async def test_send_mail_and_a_bad_id_through_the_worker(
    rt: Runtime, smtp: SmtpServer, namespace: str, running_worker: RunningWorker
):
    [mail_id] = await queue_mails(rt, 1)
    mail = running_worker.broker.get_actor("send_mail")

    mail.send(str(mail_id))
    mail.send("not-a-uuid")  # logged and dropped, no retry
    mail.send(str(uuid.uuid4()))  # no such mail: nothing to do
    await asyncio.to_thread(running_worker.drain)

    assert (await email_row(rt, mail_id)).status is EmailStatus.SENT
    assert len(smtp.sink.received) == 1


async def test_a_notices_mails_go_out_on_the_wake_up_without_a_sweep(
    rt: Runtime, world, namespace: str, smtp: SmtpServer, running_worker: RunningWorker
):
    from tests.test_notices import NOTICE, _notice

    woken = dataclasses.replace(rt, tasks=RedisTasks(REDIS_URL, namespace))
    transport = httpx.ASGITransport(app=create_app(woken), client=("198.51.100.7", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            agent = GraphQL(c).as_(world.tokens["agent_a"])
            assert (await agent.ok(NOTICE, **_notice()))["reportNotice"] == {"stored": True}
        # No scheduler runs here: only the two wake-ups can have sent them.
        await asyncio.to_thread(running_worker.drain)
    finally:
        woken.tasks.close()

    assert sorted(r.to[0] for r in smtp.sink.received) == [
        "admin@owner.example",
        "it@owner.example",
    ]
    assert {r.message["Subject"] for r in smtp.sink.received} == {
        "Rundruf: 10 falsche PINs für die Rundrufnummer 299"
    }
