"""Notices: POST /notices from the routing script, GET and DELETE by the agent, on disk."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from swyx_jobservice.notices import Notice
from tests.jobservice.support import AGENT, ROUTING, Service, bearer


def notice_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "wrongPins",
        "agentNumber": "231",
        "callerNumber": "0711 4711",
        "count": 10,
    }
    body.update(fields)
    return body


def without(key: str) -> dict[str, Any]:
    body = notice_body()
    del body[key]
    return body


async def post(service: Service, body: Any, token: str = ROUTING) -> httpx.Response:
    return await service.client.post("/notices", json=body, headers=bearer(token))


async def accepted(service: Service, body: Any) -> str:
    response = await post(service, body)
    assert response.status_code == 201, response.text
    notice_id: str = response.json()["id"]
    return notice_id


async def notices(service: Service) -> list[dict[str, Any]]:
    response = await service.client.get("/notices", headers=bearer(AGENT))
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["notices"]
    return listed


async def delete(service: Service, notice_id: str, token: str = AGENT) -> httpx.Response:
    return await service.client.delete(f"/notices/{notice_id}", headers=bearer(token))


async def test_it_stores_a_notice_and_lists_it(service: Service) -> None:
    response = await post(service, notice_body())
    assert response.status_code == 201
    notice_id = response.json()["id"]
    assert response.json() == {"id": notice_id}
    assert uuid.UUID(notice_id).version == 4
    assert service.files() == [f"notices/{notice_id}.json"]
    stored = json.loads((service.settings.data_dir / "notices" / f"{notice_id}.json").read_text())
    [listed] = await notices(service)
    assert listed == stored
    assert listed == {
        "id": notice_id,
        "receivedAt": listed["receivedAt"],
        "kind": "wrongPins",
        "agentNumber": "231",
        "callerNumber": "0711 4711",
        "count": 10,
    }
    assert listed["receivedAt"].endswith("+00:00")


async def test_it_lists_notices_oldest_first(service: Service) -> None:
    ids = [await accepted(service, notice_body(count=10 + n)) for n in range(3)]
    assert [n["id"] for n in await notices(service)] == ids


async def test_it_accepts_an_anonymous_caller(service: Service) -> None:
    await accepted(service, notice_body(callerNumber=""))
    [listed] = await notices(service)
    assert listed["callerNumber"] == ""


async def test_it_ignores_unknown_fields(service: Service) -> None:
    notice_id = await accepted(service, notice_body(groupName="Brandschutz", extra={"a": 1}))
    [listed] = await notices(service)
    assert set(listed) == {"id", "receivedAt", "kind", "agentNumber", "callerNumber", "count"}
    stored = (service.settings.data_dir / "notices" / f"{notice_id}.json").read_text()
    assert "Brandschutz" not in stored


async def test_notices_and_jobs_are_apart(service: Service) -> None:
    await accepted(service, notice_body())
    jobs = await service.poll()
    assert jobs == []


# -- bad input ------------------------------------------------------------------

BAD_NOTICES = [
    pytest.param([notice_body()], None, "JSON object", id="array"),
    pytest.param(without("kind"), "kind", "required", id="no-kind"),
    pytest.param(notice_body(kind="jobFailed"), "kind", "one of: wrongPins", id="unknown-kind"),
    pytest.param(notice_body(kind=["wrongPins"]), "kind", "one of", id="kind-list"),
    pytest.param(without("agentNumber"), "agentNumber", "required", id="no-agent"),
    pytest.param(notice_body(agentNumber=231), "agentNumber", "string", id="agent-int"),
    pytest.param(notice_body(agentNumber=""), "agentNumber", "empty", id="agent-empty"),
    pytest.param(notice_body(agentNumber="2" * 65), "agentNumber", "longer", id="agent-long"),
    pytest.param(notice_body(agentNumber="23\n1"), "agentNumber", "control", id="agent-ctrl"),
    pytest.param(without("callerNumber"), "callerNumber", "required", id="no-caller"),
    pytest.param(notice_body(callerNumber=4711), "callerNumber", "string", id="caller-int"),
    pytest.param(without("count"), "count", "required", id="no-count"),
    pytest.param(notice_body(count="10"), "count", "integer", id="count-string"),
    pytest.param(notice_body(count=10.0), "count", "integer", id="count-float"),
    pytest.param(notice_body(count=True), "count", "integer", id="count-bool"),
    pytest.param(notice_body(count=0), "count", "from 1", id="count-zero"),
    pytest.param(notice_body(count=10**7), "count", "from 1", id="count-huge"),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD_NOTICES)
async def test_it_rejects_bad_notices_and_writes_nothing(
    service: Service, body: Any, field: str | None, reason: str
) -> None:
    response = await post(service, body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert reason in response.json()["error"]
    assert service.files() == []


async def test_it_rejects_bad_json_and_other_media_types(service: Service) -> None:
    headers = bearer(ROUTING)
    broken = await service.client.post(
        "/notices", content=b'{"kind":', headers={**headers, "Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()["error"]) == (400, "the body is not valid JSON")
    form = await service.client.post("/notices", data={"kind": "wrongPins"}, headers=headers)
    assert form.status_code == 415
    assert "application/json" in form.json()["error"]
    assert service.files() == []


async def test_it_rejects_a_large_body(service: Service) -> None:
    response = await post(service, notice_body(padding="x" * 70_000))
    assert response.status_code == 413
    assert service.files() == []


async def test_it_refuses_more_than_1000_pending_notices(service: Service) -> None:
    folder = service.settings.data_dir / "notices"
    start = datetime(2025, 3, 1, tzinfo=UTC)
    for n in range(1000):
        notice = Notice(str(uuid.uuid4()), start + timedelta(seconds=n), "wrongPins", "231", "", 10)
        (folder / f"{notice.id}.json").write_text(json.dumps(notice.to_json()))
    full = service.restart()
    response = await post(full, notice_body())
    assert response.status_code == 503
    assert "1000 notices are pending" in response.json()["error"]
    assert len(full.files()) == 1000
    oldest = (await notices(full))[0]["id"]
    assert (await delete(full, oldest)).status_code == 204
    assert (await post(full, notice_body())).status_code == 201


# -- deleting, restarts ---------------------------------------------------------


async def test_delete_removes_the_notice(service: Service) -> None:
    first = await accepted(service, notice_body())
    second = await accepted(service, notice_body(count=11))
    response = await delete(service, first)
    assert (response.status_code, response.content) == (204, b"")
    assert [n["id"] for n in await notices(service)] == [second]
    assert service.files() == [f"notices/{second}.json"]
    again = await delete(service, first)
    assert (again.status_code, again.json()["error"]) == (404, "no such notice")


@pytest.mark.parametrize("notice_id", [str(uuid.uuid4()), "not-a-uuid", "..%2Fjobs"])
async def test_it_answers_404_for_unknown_notices(service: Service, notice_id: str) -> None:
    response = await delete(service, notice_id)
    assert response.status_code == 404


async def test_notices_survive_a_restart(service: Service) -> None:
    ids = [await accepted(service, notice_body(count=10 + n)) for n in range(3)]
    before = await notices(service)
    restarted = service.restart()
    assert await notices(restarted) == before
    assert (await delete(restarted, ids[1])).status_code == 204
    assert [n["id"] for n in await notices(restarted.restart())] == [ids[0], ids[2]]


async def test_a_restart_removes_leftovers_and_keeps_unreadable_files(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    notice_id = await accepted(service, notice_body())
    folder = service.settings.data_dir / "notices"
    (folder / f".{notice_id}.json.abc123").write_bytes(b"{")  # crash before the rename
    bad = folder / f"{uuid.uuid4()}.json"
    bad.write_text('{"kind": "wrongPins"}')
    restarted = service.restart()
    assert [n["id"] for n in await notices(restarted)] == [notice_id]
    assert bad.exists()
    assert not (folder / f".{notice_id}.json.abc123").exists()
    assert "ignoring unreadable notice file" in caplog.text


# -- tokens ---------------------------------------------------------------------

NOTICE = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "owner"),
    [
        ("POST", "/notices", ROUTING),
        ("GET", "/notices", AGENT),
        ("DELETE", f"/notices/{NOTICE}", AGENT),
    ],
)
@pytest.mark.parametrize(
    ("who", "status"), [(None, 401), ("wrong-token-0123456789", 401), ("other", 403)]
)
async def test_it_rejects_the_wrong_party(
    service: Service, method: str, path: str, owner: str, who: str | None, status: int
) -> None:
    token = (ROUTING if owner == AGENT else AGENT) if who == "other" else who
    headers = {**bearer(token), "Content-Type": "application/json"}
    content = json.dumps(notice_body()).encode() if method == "POST" else None
    response = await service.client.request(method, path, headers=headers, content=content)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert service.files() == []
