"""A finished broadcast's job leaves the job service: a failed deletion is retried after 1 s,
doubling up to 30 s, and the pace starts over after a success (edge_agent/broadcast/reporter.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import COMPLETED, Broadcast
from edge_agent.broadcast.reporter import DeletionBackoff, Reporter
from edge_agent.config import Enrolment
from edge_agent.jobservice import JobServiceClient
from edge_agent.server import Server
from tests.jobservice.support import AGENT, Service, job_body, make_settings


class FailsFirstDelete(httpx.AsyncBaseTransport):
    """The real job service app; the first DELETE finds it down (connection refused)."""

    def __init__(self, app: httpx.AsyncBaseTransport) -> None:
        self.app = app
        self.deletes: list[float] = []  # when each DELETE came (monotonic)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            self.deletes.append(time.monotonic())
            if len(self.deletes) == 1:
                raise httpx.ConnectError("connection refused", request=request)
        return await self.app.handle_async_request(request)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    service = Service.start(make_settings(tmp_path))
    yield service
    await service.close()


async def finished_broadcast(journal: Journal, job_id: str) -> Broadcast:
    """A broadcast of the job that is over and fully reported: only the deletion is left."""
    now = datetime.now(UTC)
    b = Broadcast("b-1", "job", job_id, "g-1", 2, now, now + timedelta(minutes=5), COMPLETED)
    await journal.create(b, [])
    await journal.acked(b.id, 0, True)
    return b


async def test_it_retries_a_failed_job_deletion_after_1_second_not_30(
    tmp_path: Path, service: Service
) -> None:
    job_id = await service.accepted(job_body())
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    b = await finished_broadcast(journal, job_id)
    transport = FailsFirstDelete(httpx.ASGITransport(app=service.app))
    jobservice = JobServiceClient("http://jobs", AGENT, transport=transport)
    server = Server(Enrolment("http://127.0.0.1:9", "inst-1", "token-1"), verify_tls=True)
    reporter = Reporter(journal, server, jobservice, backoff_cap_s=60)

    task = asyncio.create_task(reporter.run_forever())
    try:
        async with asyncio.timeout(10):
            await reporter.settled.wait()  # nothing left: the job is deleted
        assert (await journal.get(b.id)).source_done
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await jobservice.aclose()
        await server.aclose()
        await journal.close()

    first, second = transport.deletes
    assert 0.9 <= second - first < 5  # the old pace waited 30 s
    assert await service.poll() == []  # the job is gone from the job service
    assert reporter.deletion_backoff.failures == 0  # and the pace starts over


def test_the_deletion_pause_doubles_from_1_second_up_to_30() -> None:
    backoff = DeletionBackoff()

    assert [backoff.failed() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_deletion_pause_starts_over_after_a_success() -> None:
    backoff = DeletionBackoff()
    for _ in range(5):
        backoff.failed()

    backoff.succeeded()

    assert backoff.failed() == 1
