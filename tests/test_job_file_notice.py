"""A damaged job file the agent reports (issue 14, point 8): the tenant and support are
mailed, and the history shows a failed trigger at the time the alarm was triggered."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from api.models import Email, EmailStatus, Language
from api.runtime import Runtime
from tests.conftest import error_codes
from tests.test_authorization import snapshot

NOTICE = "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }"
HISTORY = """{ broadcasts(first: 20) { nodes { groupName mode status triggerCallerNumber
  startedAt finishedAt memberCount note failureCode } } }"""
SUPPORT = "support@rundruf.example"
AT = datetime(2025, 1, 15, 13, 3, tzinfo=UTC)  # 14:03 in Berlin (winter time)
FILE = "20250115T130500Z-6f1c2e0a-3b7d-4c9e-8a21-5d0f4e6b7c88.json"


@pytest.fixture
def rt(rt: Runtime) -> Runtime:
    """The test runtime with a support address, as production would have."""
    return dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"support_email": SUPPORT})
    )


def _notice(**extra: Any) -> dict[str, Any]:
    return {
        "input": {
            "noticeId": FILE,
            "kind": "jobFileDamaged",
            "agentNumber": "299",
            "callerNumber": "0301234567",
            "count": 1,
            "at": AT.isoformat(),
            "fileName": FILE,
            "mode": 2,
            **extra,
        }
    }


async def failed_triggers(gql: Any, world: Any, who: str) -> list[dict[str, Any]]:
    """The history's rows with a failure code (the world has broadcasts of its own)."""
    history = await gql.as_(world.tokens[who]).ok(HISTORY)
    return [n for n in history["broadcasts"]["nodes"] if n["failureCode"] is not None]


async def _mails(rt: Runtime) -> list[Email]:
    async with rt.db.reading() as s:
        return list((await s.scalars(select(Email).order_by(Email.to_address))).all())


async def test_it_mails_tenant_and_support_and_shows_a_failed_trigger(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    first = await agent.ok(NOTICE, **_notice())
    assert first["reportNotice"] == {"stored": True}

    mails = await _mails(rt)
    assert [m.to_address for m in mails] == ["admin@owner.example", "it@owner.example", SUPPORT]
    assert all(m.status is EmailStatus.QUEUED and m.language is Language.DE for m in mails)
    mail = mails[0]
    assert mail.subject == (
        "Rundruf: Alarm für die Rundrufnummer 299 nicht ausgeführt (Auftrag beschädigt)"
    )
    assert "15.01.2025 um 14:03 Uhr (MEZ)" in mail.body
    assert "„Brandschutz“" in mail.body
    assert "NICHT durchgeführt" in mail.body and "Niemand wurde angerufen" in mail.body
    assert FILE in mail.body

    assert await failed_triggers(gql, world, "owner") == [
        {
            "groupName": "Brandschutz",
            "mode": "ALARM",
            "status": "FAILED",
            "triggerCallerNumber": "0301234567",
            "startedAt": "2025-01-15T13:03:00+00:00",
            "finishedAt": "2025-01-15T13:03:00+00:00",
            "memberCount": 0,
            "note": FILE,
            "failureCode": "JOB_FILE_DAMAGED",
        }
    ]
    # The agent's repeat (its acknowledgement at the job service was lost) is a no-op.
    before = await snapshot(rt)
    again = await agent.ok(NOTICE, **_notice())
    assert again["reportNotice"] == {"stored": False}
    assert await snapshot(rt) == before


async def test_an_unknown_number_and_mode_still_make_a_failed_alarm(gql, rt, world):
    await gql.as_(world.tokens["agent_a"]).ok(
        NOTICE, **_notice(agentNumber=None, callerNumber=None, mode=None)
    )
    [node] = await failed_triggers(gql, world, "owner")
    assert (node["groupName"], node["mode"], node["status"]) == ("?", "ALARM", "FAILED")
    mail = (await _mails(rt))[0]
    assert mail.subject == "Rundruf: Alarm nicht ausgeführt (Auftrag beschädigt)"


async def test_the_failed_trigger_is_the_tenants_own(gql, rt, world):
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice())
    assert await failed_triggers(gql, world, "outsider") == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"fileName": None}, "fileName"),
        ({"fileName": "x\n.json"}, "fileName"),
        ({"fileName": "f" * 65}, "fileName"),
        ({"mode": 4}, "mode"),
    ],
)
async def test_bad_damaged_file_notices_are_refused(gql, rt, world, bad, field):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["agent_a"])(NOTICE, **_notice(**bad))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field
    assert await snapshot(rt) == before
