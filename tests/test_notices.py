"""Notices the agent forwards (10 wrong PINs): mails to the tenant, each notice once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from api.models import AuditLog, Email, EmailStatus, Language, Role, Tenant, User
from tests.conftest import error_codes
from tests.test_authorization import snapshot
from tests.test_health_report import post_ascii

NOTICE = "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }"
AT = datetime(2025, 1, 15, 13, 3, tzinfo=UTC)  # 14:03 in Berlin (winter time)


def _notice(notice_id: str = "n-1", **extra: Any) -> dict[str, Any]:
    return {
        "input": {
            "noticeId": notice_id,
            "kind": "wrongPins",
            "agentNumber": "299",
            "callerNumber": "0301234567",
            "count": 10,
            "at": AT.isoformat(),
            **extra,
        }
    }


async def _mails(rt, tenant_id=None) -> list[Email]:
    query = select(Email).order_by(Email.to_address)
    if tenant_id is not None:
        query = query.where(Email.tenant_id == tenant_id)
    async with rt.db.reading() as s:
        return list((await s.scalars(query)).all())


async def _notice_entries(rt) -> int:
    async with rt.db.reading() as s:
        return await s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "notice.report")
        )


async def test_it_mails_the_contact_and_the_admins_once(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    first = await agent.ok(NOTICE, **_notice())
    assert first["reportNotice"] == {"stored": True}
    mails = await _mails(rt)
    assert [m.to_address for m in mails] == ["admin@owner.example", "it@owner.example"]
    assert {m.tenant_id for m in mails} == {world.a.tenant_id}
    assert all(m.status is EmailStatus.QUEUED and m.language is Language.DE for m in mails)
    mail = mails[0]
    assert mail.subject == "Rundruf: 10 falsche PINs für die Rundrufnummer 299"
    assert "0301234567" in mail.body
    assert "15.01.2025 um 14:03 Uhr (MEZ)" in mail.body
    assert "„Brandschutz“" in mail.body
    assert "nie gesperrt" in mail.body
    # The job service retries: the repeat is answered, and nothing is written twice.
    before = await snapshot(rt)
    again = await agent.ok(NOTICE, **_notice(count=11))
    assert again["reportNotice"] == {"stored": False}
    assert await snapshot(rt) == before
    assert await _notice_entries(rt) == 1


async def test_a_new_notice_id_is_a_new_notice(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    await agent.ok(NOTICE, **_notice("n-1"))
    second = await agent.ok(NOTICE, **_notice("n-2"))
    assert second["reportNotice"] == {"stored": True}
    assert len(await _mails(rt)) == 4
    assert await _notice_entries(rt) == 2


async def test_a_repeat_racing_the_first_is_stored_once(gql, rt, world):
    agent = gql.as_(world.tokens["agent_a"])
    answers = await asyncio.gather(*(agent.ok(NOTICE, **_notice("n-race")) for _ in range(5)))
    assert sorted(a["reportNotice"]["stored"] for a in answers) == [False] * 4 + [True]
    assert len(await _mails(rt)) == 2
    assert await _notice_entries(rt) == 1


async def test_english_tenants_get_english_mails(gql, rt, world):
    async with rt.db.transaction() as s:
        await s.execute(
            update(Tenant).where(Tenant.id == world.a.tenant_id).values(language=Language.EN)
        )
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice(callerNumber=None))
    mail = (await _mails(rt))[0]
    assert mail.language is Language.EN
    assert mail.subject == "Rundruf: 10 wrong PINs for broadcast number 299"
    assert "withheld number" in mail.body
    assert "2025-01-15 at 14:03 (CET)" in mail.body
    assert "never locked" in mail.body


async def test_the_recipients_are_active_admins_and_the_contact_each_once(gql, rt, world):
    async with rt.db.transaction() as s:
        tenant = await s.get(Tenant, world.a.tenant_id)
        tenant.contact_email = "admin@owner.example"  # the contact is an admin too
        await s.execute(update(User).where(User.id == world.a.admin_user_id).values(active=False))
        s.add(
            User(
                tenant_id=world.a.tenant_id,
                email="second@owner.example",
                name="Second",
                role=Role.TENANT_ADMIN,
                password_hash="not-a-hash",
            )
        )
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice())
    # The viewer gets nothing; the deactivated admin's address gets one mail as the contact.
    assert [m.to_address for m in await _mails(rt)] == [
        "admin@owner.example",
        "second@owner.example",
    ]


async def test_without_a_contact_only_the_admins_are_mailed(gql, rt, world):
    async with rt.db.transaction() as s:
        await s.execute(
            update(Tenant).where(Tenant.id == world.a.tenant_id).values(contact_email=None)
        )
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice(agentNumber=None))
    [mail] = await _mails(rt)
    assert mail.to_address == "admin@owner.example"
    assert mail.subject == "Rundruf: 10 falsche PINs"


async def test_each_agent_reports_for_its_own_tenant_only(gql, rt, world):
    await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice("n-shared"))
    owners = [(m.id, m.to_address) for m in await _mails(rt, world.a.tenant_id)]
    # The same id from another installation is another notice, mailed to its own tenant.
    other = await gql.as_(world.tokens["agent_b"]).ok(NOTICE, **_notice("n-shared"))
    assert other["reportNotice"] == {"stored": True}
    outsiders = await _mails(rt, world.b.tenant_id)
    assert [m.to_address for m in outsiders] == ["admin@outsider.example", "it@outsider.example"]
    assert all("Brandschutz" in m.body for m in outsiders)  # tenant B's own group of that name
    assert [(m.id, m.to_address) for m in await _mails(rt, world.a.tenant_id)] == owners
    again = await gql.as_(world.tokens["agent_a"]).ok(NOTICE, **_notice("n-shared"))
    assert again["reportNotice"] == {"stored": False}


async def test_a_users_session_cannot_report_a_notice(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["owner"])(NOTICE, **_notice())
    assert error_codes(body) == ["FORBIDDEN"]
    assert await snapshot(rt) == before


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"noticeId": ""}, "noticeId"),
        ({"noticeId": "n" * 65}, "noticeId"),
        ({"noticeId": "n-\n1"}, "noticeId"),
        ({"kind": "wrongPin"}, "kind"),
        ({"count": 0}, "count"),
        ({"count": 10_001}, "count"),
        ({"at": "2025-01-15T13:03:00"}, "at"),
        ({"agentNumber": "2" * 65}, "agentNumber"),
        ({"callerNumber": "030\r\nBcc: x@example.com"}, "callerNumber"),
        ({"callerNumber": "030\u2028Bcc: x@example.com"}, "callerNumber"),
        ({"agentNumber": "\u202e992"}, "agentNumber"),
        ({"noticeId": "n\u0085"}, "noticeId"),
        ({"at": "9999-12-31T23:00:00-05:00"}, "at"),
        ({"at": "0001-01-01T00:00:00+14:00"}, "at"),
        ({"at": "9999-12-31T23:59:59Z"}, "at"),
    ],
)
async def test_bad_notices_are_refused_and_write_nothing(gql, rt, world, bad, field):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["agent_a"])(NOTICE, **_notice(**bad))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field
    assert await snapshot(rt) == before


async def test_a_lone_surrogate_in_a_notice_is_refused_naming_the_field(gql, rt, world):
    before = await snapshot(rt)
    body = await post_ascii(gql, world.tokens["agent_a"], NOTICE, **_notice(callerNumber="\ud800"))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "callerNumber"
    assert await snapshot(rt) == before


async def test_the_longest_ids_and_numbers_are_accepted(gql, rt, world):
    body = await gql.as_(world.tokens["agent_a"]).ok(
        NOTICE,
        **_notice("n" * 64, agentNumber="2" * 64, callerNumber="0" * 64, count=10_000),
    )
    assert body["reportNotice"] == {"stored": True}
