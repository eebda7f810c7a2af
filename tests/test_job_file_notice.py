"""A damaged job file the agent reports (issue 14, point 8): the tenant and support are
mailed, and the history shows a failed trigger at the time the alarm was triggered."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from api.domain.damaged_jobs import MAILS_PER_HOUR
from api.models import Broadcast, Email, EmailStatus, Installation, Language
from api.runtime import Runtime
from api.security import hash_token
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
    assert "quarantine/reported/" + FILE in mail.body
    assert "Kunde: " in mail.body

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
    ("odd", "kept"),
    [
        ({"fileName": None}, {"note": FILE}),
        ({"fileName": "f" * 80}, {"note": "f" * 63 + "…"}),
        ({"mode": 4}, {"mode": "ALARM"}),
        ({"at": "1970-01-01T00:00:00+00:00"}, {}),
        ({"at": "9999-12-31T00:00:00+00:00"}, {}),
        ({"agentNumber": "2" * 80}, {"groupName": "2" * 63 + "…"}),
    ],
)
async def test_what_a_damaged_file_still_shows_is_kept_as_it_can_be(gql, rt, world, odd, kept):
    # Never refused for its content: the file is damaged, its report must get through.
    body = await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice(**odd))
    assert body["reportNotice"] == {"stored": True}
    [node] = await failed_triggers(gql, world, "owner")
    assert {k: node[k] for k in kept} == kept
    if "at" in odd:
        # A time the server cannot use: the report's time, and the mail says so.
        assert node["startedAt"] == rt.clock().isoformat()
        mail = (await _mails(rt))[0]
        assert "ausgelöst zu unbekannter Zeit" in mail.body


async def test_a_long_notice_id_becomes_a_stable_key(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    long_id = "20250115T130500Z-" + "x" * 70 + ".json"
    first = await agent.ok(NOTICE, **_notice(noticeId=long_id))
    again = await agent.ok(NOTICE, **_notice(noticeId=long_id))
    assert (first["reportNotice"], again["reportNotice"]) == ({"stored": True}, {"stored": False})
    async with rt.db.reading() as s:
        [key] = (
            await s.scalars(select(Broadcast.agent_broadcast_id).where(Broadcast.note == FILE))
        ).all()
    assert key.startswith("sha256-") and len(key) <= 64


async def test_a_second_installation_of_the_tenant_reporting_the_same_file_is_a_repeat(
    gql, rt, world
):
    async with rt.db.transaction() as s:
        first = await s.scalar(
            select(Installation).where(Installation.hostname == "swyx.owner.example")
        )
        assert first is not None
        s.add(
            Installation(
                tenant_id=first.tenant_id,
                license_id=first.license_id,
                hostname="swyx.owner.example",
                token_hash=hash_token("rda_second-one"),
            )
        )
    assert (await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice()))["reportNotice"] == {
        "stored": True
    }
    before = await snapshot(rt)
    again = await gql.as_("rda_second-one").ok(NOTICE, **_notice())
    assert again["reportNotice"] == {"stored": False}
    assert await snapshot(rt) == before


async def test_digits_in_the_file_name_are_kept_as_they_came(gql, rt, world):
    # A job id may hold a group's PIN as a run of digits: it is an id, not a secret.
    name = "20250115T130500Z-3782e62e-4711-4122-9aba-d51a3edb3d9e.json"  # PIN 4711
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice(noticeId=name, fileName=name))
    [node] = await failed_triggers(gql, world, "owner")
    assert node["note"] == name
    assert name in (await _mails(rt))[0].body


async def test_the_mail_names_the_customer_and_where_the_file_lies(gql, rt, world):
    stuck = "jobs/6f1c2e0a-3b7d-4c9e-8a21-5d0f4e6b7c88.json"
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice(fileName=stuck))
    [support] = [m for m in await _mails(rt) if m.to_address == SUPPORT]
    assert "Kunde: Owner AG" in support.body
    assert "Installation: swyx.owner.example" in support.body
    assert "liegt noch im Auftragsordner des Dienstes: " + stuck in support.body
    assert "quarantine/reported" not in support.body


async def test_damaged_job_mails_are_bounded_per_installation_and_hour(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])

    async def report(n: int) -> None:
        name = f"20250115T130500Z-{n:04d}.json"
        await agent.ok(NOTICE, **_notice(noticeId=name, fileName=name))

    for n in range(MAILS_PER_HOUR + 2):
        await report(n)

    mails = await _mails(rt)
    per_address = MAILS_PER_HOUR + 1  # the last one within the hour sums up
    assert len(mails) == 3 * per_address
    summaries = [m for m in mails if "viele Aufträge beschädigt" in m.subject]
    assert len(summaries) == 3
    # Every one is in the history.
    assert len(await failed_triggers(gql, world, "owner")) == MAILS_PER_HOUR + 2
    rt.clock.advance(hours=1, minutes=1)
    await report(99)
    assert len(await _mails(rt)) == 3 * per_address + 3
