"""The job the real routing script builds for a caller with an odd name or number, posted to
the real job service: the alarm is accepted (201), the name and number stored cleaned and
cut. The script reads a 400 as final and tells the caller the alarm failed, so PBX text
must never be a reason to refuse it (issue 14, point 1, review)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.callrouting.test_lua_flow import PIN, call, lua, run  # noqa: F401 - the fixture
from tests.jobservice.support import ROUTING, bearer
from tests.jobservice.test_process import JobService

NAMES = [
    pytest.param(b"Pforte\tWest", "Pforte West", id="tab"),
    pytest.param("Pforte\u0085West".encode(), "Pforte West", id="c1-next-line-utf8"),
    pytest.param(b"Pforte\x1b[1mWest", "Pforte\ufffd[1mWest", id="escape"),
    pytest.param(b"Pforte\x7fWest", "Pforte\ufffdWest", id="delete"),
    pytest.param(b"P" * 129, "P" * 127 + "\u2026", id="129-characters"),
    pytest.param(b"Pforte West", "Pforte West", id="plain"),
]
NUMBERS = [
    pytest.param("1" * 65, "1" * 63 + "\u2026", id="65-digits"),
    pytest.param("0711\t4711", "0711 4711", id="tab"),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobService]:
    running = JobService(tmp_path_factory.mktemp("jobservice")).start()
    try:
        yield running
    finally:
        running.kill()


def post_job(service: JobService, body: str) -> dict[str, Any]:
    """Posts the script's body as it built it; returns the job the service stored."""
    response = httpx.post(
        service.url + "/jobs",
        content=body.encode(),
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text  # each call its own key
    job_id = response.json()["id"]
    stored: dict[str, Any] = json.loads(
        (Path(service.root) / "data" / "jobs" / f"{job_id}.json").read_text()
    )
    return stored


@pytest.mark.parametrize(("raw", "stored"), NAMES)
def test_an_odd_caller_name_still_raises_the_alarm(
    lua: str,  # noqa: F811 - the fixture
    service: JobService,
    raw: bytes,
    stored: str,
) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], callerNameHex=raw.hex(), callId=f"name-{raw.hex()}"))
    job = post_job(service, c.posts[0]["body"])
    assert job["callerName"] == stored


@pytest.mark.parametrize(("number", "stored"), NUMBERS)
def test_an_odd_caller_number_still_raises_the_alarm(
    lua: str,  # noqa: F811 - the fixture
    service: JobService,
    number: str,
    stored: str,
) -> None:
    (c,) = run(lua, call([PIN, "2", "1"], caller=number, callId=f"number-{number.encode().hex()}"))
    job = post_job(service, c.posts[0]["body"])
    assert job["callerNumber"] == stored
