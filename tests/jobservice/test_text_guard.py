"""Every text of a job or notice body passes one check (swyx_jobservice/text.py): control
characters (C0, DEL, C1), lone surrogates and over-long values get 400 with the code
invalidText and the field named, and nothing is written (issue 14, point 1)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.jobservice.support import ROUTING, Service, bearer, job_body

BAD = [
    pytest.param("07\x0011", id="nul"),
    pytest.param("07\x1b11", id="escape"),
    pytest.param("07\x8511", id="c1-next-line"),
    pytest.param("07\ud80011", id="lone-surrogate"),
]

# Field, its limit, and a body that is valid but for the field.
JOB_FIELDS = [
    pytest.param("agentNumber", 64, lambda v: job_body(agentNumber=v), id="agentNumber"),
    pytest.param("groupId", 128, lambda v: job_body(groupId=v), id="groupId"),
    pytest.param("callerNumber", 64, lambda v: job_body(callerNumber=v), id="callerNumber"),
    pytest.param("callerName", 128, lambda v: job_body(callerName=v), id="callerName"),
    pytest.param(
        "recordingPath", 4096, lambda v: job_body(mode=3, recordingPath=v), id="recordingPath"
    ),
    pytest.param("memberStates", 128, lambda v: job_body(memberStates={v: 0}), id="memberStates"),
]
NOTICE_FIELDS = [
    pytest.param("agentNumber", 64, id="agentNumber"),
    pytest.param("callerNumber", 64, id="callerNumber"),
]


def notice_body(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "wrongPins",
        "agentNumber": "231",
        "callerNumber": "0711",
        "count": 10,
        **fields,
    }


async def post(service: Service, path: str, body: Any) -> httpx.Response:
    """As JSON with \\u escapes: httpx's own JSON is UTF-8, which cannot carry a lone
    surrogate; json.loads turns the escape into one."""
    return await service.client.post(
        path,
        content=json.dumps(body),
        headers={**bearer(ROUTING), "Content-Type": "application/json"},
    )


def assert_invalid_text(service: Service, response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["code"], body["field"]) == ("invalidText", field), body
    assert service.files() == [], "a refused body must leave nothing on disk"


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize(("field", "limit", "make"), JOB_FIELDS)
async def test_a_job_text_with_a_control_character_or_lone_surrogate_is_refused(
    service: Service, field: str, limit: int, make: Any, value: str
) -> None:
    assert_invalid_text(service, await post(service, "/jobs", make(value)), field)


@pytest.mark.parametrize(("field", "limit", "make"), JOB_FIELDS)
async def test_a_job_text_over_its_limit_is_refused(
    service: Service, field: str, limit: int, make: Any
) -> None:
    for value in ("7" * (limit + 1), "7" * 100_000):
        assert_invalid_text(service, await post(service, "/jobs", make(value)), field)


@pytest.mark.parametrize("value", [*BAD, pytest.param("7" * 65, id="65-characters")])
@pytest.mark.parametrize(("field", "limit"), NOTICE_FIELDS)
async def test_a_notice_text_with_a_control_character_surrogate_or_too_long_is_refused(
    service: Service, field: str, limit: int, value: str
) -> None:
    response = await post(service, "/notices", notice_body(**{field: value}))
    assert_invalid_text(service, response, field)


async def test_clean_texts_pass(service: Service) -> None:
    response = await post(service, "/jobs", job_body(callerName="Müller\u00a0GmbH 🚒"))
    assert response.status_code == 201, response.text
    response = await post(service, "/notices", notice_body(callerNumber=""))
    assert response.status_code == 201, response.text
