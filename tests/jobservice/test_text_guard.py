"""The texts of a job or notice body (swyx_jobservice/text.py, issue 14, point 1): what
addresses something (agent number, group id, recording path) with control characters (C0,
DEL, C1), lone surrogates or over its length gets 400 with the code invalidText and the
field named, nothing written; what the PBX gives only to be shown (the caller's name and
number, the member states' ids) is cleaned and cut, never refused: a refused job is an
alarm the caller hears fail."""

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
    pytest.param(
        "recordingPath", 4096, lambda v: job_body(mode=3, recordingPath=v), id="recordingPath"
    ),
]
NOTICE_FIELDS = [
    pytest.param("agentNumber", 64, id="agentNumber"),
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


def stored_json(service: Service) -> Any:
    """The one job or notice the service wrote."""
    (name,) = [f for f in service.files() if f.endswith(".json")]
    return json.loads((service.settings.data_dir / name).read_text())


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


SHOWN = [
    pytest.param("Pforte\tWest", "Pforte West", id="tab"),
    pytest.param("Pforte\x85West", "Pforte West", id="c1-next-line"),
    pytest.param("Pforte\x1b[1mWest", "Pforte\ufffd[1mWest", id="escape"),
    pytest.param("Pforte\x7fWest", "Pforte\ufffdWest", id="delete"),
    pytest.param("Pforte\x00West", "Pforte\ufffdWest", id="nul"),
    pytest.param("Pforte\ud800West", "Pforte\ufffdWest", id="lone-surrogate"),
    pytest.param("Pforte\u202eWest", "Pforte\ufffdWest", id="bidi-override"),
    pytest.param("Pforte\u200bWest\ufeff", "Pforte\ufffdWest\ufffd", id="zero-width"),
]


@pytest.mark.parametrize(("value", "stored"), SHOWN)
@pytest.mark.parametrize("field", ["callerName", "callerNumber"])
async def test_a_callers_name_or_number_is_cleaned_never_refused(
    service: Service, field: str, value: str, stored: str
) -> None:
    response = await post(service, "/jobs", job_body(**{field: value}))
    assert response.status_code == 201, response.text
    job = stored_json(service)
    assert job[field] == stored


@pytest.mark.parametrize(("field", "limit"), [("callerName", 128), ("callerNumber", 64)])
async def test_a_callers_over_long_name_or_number_is_cut_with_an_ellipsis(
    service: Service, field: str, limit: int
) -> None:
    response = await post(service, "/jobs", job_body(**{field: "7" * (limit + 1)}))
    assert response.status_code == 201, response.text
    job = stored_json(service)
    assert job[field] == "7" * (limit - 1) + "\u2026"


async def test_unusable_member_states_are_left_out_not_refused(service: Service) -> None:
    states = {"17": 0, "1\t8": 1, "x" * 129: 2, "19": 9, "20": "0", "21": 3}
    response = await post(service, "/jobs", job_body(memberStates=states))
    assert response.status_code == 201, response.text
    job = stored_json(service)
    assert job["memberStates"] == {"17": 0, "21": 3}


async def test_a_notices_caller_number_is_cleaned_never_refused(service: Service) -> None:
    response = await post(service, "/notices", notice_body(callerNumber="07\x1b11" + "1" * 70))
    assert response.status_code == 201, response.text
    notice = stored_json(service)
    assert notice["callerNumber"] == "07\ufffd11" + "1" * 58 + "\u2026"
