"""The agent reports job files the job service quarantined, each once, against the real
job service app (issue 14, point 8)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent import files as agent_files
from edge_agent.broadcast.damaged_jobs import (
    PROBLEM_AFTER_S,
    RETRY_BASE_S,
    RETRY_CAP_S,
    DamagedJobReporter,
    damaged_notice,
)
from edge_agent.broadcast.intake import JobIntake
from edge_agent.errors import ServerRefused, ServerUnreachable
from edge_agent.jobservice import JobServiceClient, JobServiceUnavailable
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
    [
        (["quarantinedJobs"], True),
        (["dataDirNotWritable", "quarantinedJobs"], False),
        # "failing" must name why; an empty list is no all-clear.
        ([], False),
        (["quarantinedJobs", "quarantineNotWritable"], False),
        (["jobFilesHeld"], False),
    ],
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


def damaged_files(tmp_path: Path, count: int, **times: float) -> tuple[JobServiceClient, Any]:
    """A job service that found `count` job files cut short at its start; `times`
    sets a file's modification time by its index ("0": 0.0)."""
    settings = make_settings(tmp_path)
    jobs = settings.data_dir / "jobs"
    jobs.mkdir(parents=True)
    for n in range(count):
        path = jobs / f"{uuid.uuid4()}.json"
        path.write_text('{"id": "cut')
        if str(n) in times:
            os.utime(path, (times[str(n)], times[str(n)]))
    app = create_app(settings)
    client = JobServiceClient("http://jobs", AGENT, transport=httpx.ASGITransport(app=app))
    return client, app


class Refusing(Server):
    """Refuses the notices whose id is in `refused` as the server does bad input."""

    def __init__(self, refused: set[str]) -> None:
        super().__init__()
        self.refused = refused
        self.tries: list[str] = []

    async def report_notice(self, notice: dict[str, Any]) -> bool:
        self.tries.append(notice["noticeId"])
        if notice["noticeId"] in self.refused:
            raise ServerRefused("BAD_USER_INPUT")
        return await super().report_notice(notice)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_entry_the_server_refuses_holds_up_no_other(tmp_path: Path) -> None:
    client, _ = damaged_files(tmp_path, 3)
    names = [e["name"] for e in await client.quarantined()]
    server, clock = Refusing({names[0]}), Clock()
    reporter = DamagedJobReporter(client, server.report_notice, clock=clock)
    try:
        await reporter.report_round()
        assert [n["noticeId"] for n in server.notices] == names[1:]
        # The refused one waits its own pause, then is tried again.
        await reporter.report_round()
        assert server.tries.count(names[0]) == 1
        clock.now += RETRY_BASE_S
        server.refused.clear()
        await reporter.report_round()
        assert [e["name"] for e in await client.quarantined()] == []
    finally:
        await client.aclose()


async def test_an_entry_the_job_service_cannot_mark_holds_up_no_other(tmp_path: Path) -> None:
    client, _ = damaged_files(tmp_path, 3)
    names = [e["name"] for e in await client.quarantined()]
    real = client.mark_reported

    async def mark(name: str) -> None:
        if name == names[0]:
            raise JobServiceUnavailable("HTTP 503")
        await real(name)

    client.mark_reported = mark  # type: ignore[method-assign]
    server = Server()
    try:
        await DamagedJobReporter(client, server.report_notice).report_round()
        assert sorted(n["noticeId"] for n in server.notices) == names
        assert [e["name"] for e in await client.quarantined()] == names[:1]
    finally:
        await client.aclose()


async def test_a_file_time_the_server_would_refuse_is_sent_as_when_it_was_found(
    tmp_path: Path,
) -> None:
    client, _ = damaged_files(tmp_path, 1, **{"0": 0.0})
    server = Server()
    try:
        [entry] = await client.quarantined()
        assert entry["triggeredAt"].startswith("1970")
        await DamagedJobReporter(client, server.report_notice).report_round()
        [notice] = server.notices
        assert notice["at"] == entry["quarantinedAt"]
    finally:
        await client.aclose()


def test_what_is_sent_is_bounded_as_the_server_wants_it() -> None:
    now = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    name = "x" * 80 + ".json"
    notice = damaged_notice(
        {
            "name": name,
            "triggeredAt": "31999-01-01T00:00:00+00:00",
            "quarantinedAt": "not a time",
            "agentNumber": "2" * 100,
            "callerNumber": "  ",
            "mode": 7,
            "file": "jobs/" + "k" * 100,
        },
        now,
    )
    assert notice["noticeId"].startswith("sha256-") and len(notice["noticeId"]) <= 64
    assert notice["noticeId"] == damaged_notice({"name": name}, now)["noticeId"]
    assert notice["at"] == now.isoformat()
    assert len(notice["agentNumber"]) == 64 and notice["callerNumber"] is None
    assert notice["mode"] is None
    assert notice["fileName"].startswith("jobs/kkk") and len(notice["fileName"]) == 64


async def test_reporting_that_keeps_failing_makes_the_job_service_unhealthy_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = damaged_files(tmp_path, 1)
    server, clock = Server(), Clock()
    server.down = True
    reporter = DamagedJobReporter(client, server.report_notice, clock=clock)
    try:
        await reporter.report_round()
        assert await client.healthy() is True
        for _ in range(3):
            clock.now += PROBLEM_AFTER_S
            await reporter.report_round()
        assert await client.healthy() is False
        warnings = [r for r in caplog.records if "could not be reported" in r.getMessage()]
        assert [r.levelname for r in warnings] == ["WARNING"]
        server.down = False
        clock.now += RETRY_CAP_S
        await reporter.report_round()
        assert await client.healthy() is True
    finally:
        await client.aclose()


async def test_every_entry_is_reported_a_page_at_a_time(tmp_path: Path) -> None:
    client, _ = damaged_files(tmp_path, 120)
    server = Server()
    try:
        await DamagedJobReporter(client, server.report_notice).report_round()
        assert len(server.notices) == 120
        assert await client.quarantined() == []
    finally:
        await client.aclose()


async def test_a_damaged_leftover_of_an_alarm_that_ran_is_not_reported_as_lost(
    tmp_path: Path,
) -> None:
    client, job_id = damaged_job_service(tmp_path)
    server = Server()
    asked: list[str] = []

    async def ran(source_id: str) -> bool:
        asked.append(source_id)
        return True

    try:
        await DamagedJobReporter(client, server.report_notice, ran).report_round()
        assert asked == [job_id]
        assert server.notices == []
        assert await client.quarantined() == []
    finally:
        await client.aclose()


async def test_a_file_that_could_not_be_moved_is_reported_where_it_lies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(source: Path, target: Path) -> None:
        raise PermissionError(13, "quarantine not writable", str(target))

    monkeypatch.setattr(agent_files, "rename", refuse)
    client, job_id = damaged_job_service(tmp_path)
    server = Server()
    try:
        for _ in range(3):
            await DamagedJobReporter(client, server.report_notice).report_round()
        [notice] = server.notices
        assert notice["fileName"] == f"jobs/{job_id}.json"
        assert await client.quarantined() == []
    finally:
        await client.aclose()
