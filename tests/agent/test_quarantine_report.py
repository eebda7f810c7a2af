"""The agent reports job files the job service quarantined, each once, against the real
job service app (issue 14, point 8)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.broadcast.intake import JobIntake
from edge_agent.errors import ServerUnreachable
from edge_agent.jobservice import JobServiceClient
from swyx_jobservice.app import create_app
from tests.jobservice.support import AGENT, make_settings


class Server:
    """The central service's notice mutation, recorded; it can be down."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.down = False

    async def report_notice(self, notice: dict[str, Any]) -> bool:
        if self.down:
            raise ServerUnreachable("down")
        self.notices.append(notice)
        return True


def damaged_job_service(tmp_path: Path) -> tuple[JobServiceClient, str]:
    """A job service that found one job file cut short at its start."""
    settings = make_settings(tmp_path)
    jobs = settings.data_dir / "jobs"
    jobs.mkdir(parents=True)
    job_id = str(uuid.uuid4())
    (jobs / f"{job_id}.json").write_text(
        f'{{"id": "{job_id}", "receivedAt": "2026-12-07T06:01:02.000003+00:00", '
        '"agentNumber": "231", "groupId": null, "mode": 2, "callerNumber": "0711 4'
    )
    app = create_app(settings)
    client = JobServiceClient("http://jobs", AGENT, transport=httpx.ASGITransport(app=app))
    return client, job_id


def intake(client: JobServiceClient, server: Server) -> JobIntake:
    return JobIntake(client, None, server)  # type: ignore[arg-type]  # no jobs run here


async def test_a_quarantined_job_file_is_reported_once_as_a_damaged_job(tmp_path: Path) -> None:
    client, job_id = damaged_job_service(tmp_path)
    server = Server()
    try:
        assert await client.healthy() is True  # told as a notice, not as unreachable
        await intake(client, server).forward_quarantine()
        [notice] = server.notices
        assert notice["kind"] == "jobFileDamaged"
        assert notice["noticeId"] == notice["fileName"]
        assert notice["fileName"].endswith(f"-{job_id}.json")
        assert (notice["agentNumber"], notice["mode"], notice["count"]) == ("231", 2, 1)
        assert notice["at"] == "2026-12-07T06:01:02.000003+00:00"
        # Marked reported: a second round, or a restarted agent, sends nothing.
        await intake(client, server).forward_quarantine()
        assert len(server.notices) == 1
        assert await client.quarantined() == []
    finally:
        await client.aclose()


async def test_it_stays_listed_while_the_server_cannot_take_it(tmp_path: Path) -> None:
    client, _ = damaged_job_service(tmp_path)
    server = Server()
    server.down = True
    try:
        await intake(client, server).forward_quarantine()
        assert len(await client.quarantined()) == 1
        server.down = False
        await intake(client, server).forward_quarantine()
        assert len(server.notices) == 1
        assert await client.quarantined() == []
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("problems", "reachable"),
    [(["quarantinedJobs"], True), (["dataDirNotWritable", "quarantinedJobs"], False)],
)
async def test_only_an_unwritable_folder_makes_the_job_service_unhealthy(
    problems: list[str], reachable: bool
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        writable = "dataDirNotWritable" not in problems
        body = {"status": "failing", "problems": problems, "dataDir": writable}
        return httpx.Response(200, json=body)

    client = JobServiceClient("http://jobs", AGENT, transport=httpx.MockTransport(answer))
    try:
        assert await client.healthy() is reachable
    finally:
        await client.aclose()
