"""Where the server scrubs what agents report (issue 14, point 5, review of the scrubber):
only free texts, after deduplication, before cutting; identifiers stay as they came."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from api.models import (
    AuditLog,
    BroadcastGroup,
    CallAttempt,
    Command,
    CommandStatus,
    Email,
    Installation,
)
from api.services import agents, known_secrets
from tests.test_agent_service import create_group
from tests.test_broadcast_reports import REPORT, _events, _report
from tests.test_health_report import HEALTH, health, sip
from tests.test_notices import NOTICE, _notice
from tests.world import PIN

PBX_PASSWORD = "pbx-secret"  # the world's tenant's (tests/world.py)
ERROR_MAX = 4000  # what a command error keeps (api/services/agents.py)


async def _command(rt, command_id: str) -> Command:
    async with rt.db.reading() as s:
        command = await s.get(Command, uuid.UUID(command_id))
        assert command is not None
        return command


async def test_a_command_result_is_stored_with_its_texts_scrubbed_and_its_ids_kept(gql, rt, world):
    command_id = await create_group(gql, world.tokens["owner"])
    agent = await agents.agent_for_token(rt, world.tokens["agent_a"])
    result = {
        "errorCode": "pbxRefused",
        "userId": "4711",
        "output": [{"message": f"Set-IpPbxUser -SipPassword Sip-5512 failed ({PBX_PASSWORD})"}],
        "sipPassword": "Sip-5512",
        "pin": 90817263,
    }
    await agents.complete(rt, agent, uuid.UUID(command_id), False, result, "refused")
    stored = (await _command(rt, command_id)).result
    assert stored == {
        "errorCode": "pbxRefused",
        "userId": "4711",
        "output": [{"message": "Set-IpPbxUser -SipPassword *** failed (***)"}],
        "sipPassword": "***",
        "pin": "***",
    }


async def test_an_error_is_scrubbed_before_it_is_cut(gql, rt, world):
    # The PBX password across the cut at 4,000 characters: cut first, its first part
    # would no longer be a known value and would be stored.
    command_id = await create_group(gql, world.tokens["owner"])
    agent = await agents.agent_for_token(rt, world.tokens["agent_a"])
    error = "x" * (ERROR_MAX - 4) + f" {PBX_PASSWORD} and more"
    await agents.complete(rt, agent, uuid.UUID(command_id), False, {}, error)
    stored = (await _command(rt, command_id)).error
    assert stored is not None and len(stored) <= ERROR_MAX
    assert PBX_PASSWORD[:3] not in stored[-10:], stored[-10:]


async def test_a_notice_keeps_its_numbers_when_one_equals_a_pin(gql, rt, world):
    # The agent's number equals the group's PIN: the group is found all the same, and
    # the notice's id, caller number and file name are stored as they came.
    async with rt.db.transaction() as s:
        await s.execute(
            update(BroadcastGroup)
            .where(BroadcastGroup.tenant_id == world.a.tenant_id)
            .values(agent_extension=PIN, pin_sealed=rt.box.seal(PIN))
        )
    agent = gql.as_(world.tokens["agent_a"])
    notice = _notice(f"n-{PIN}", agentNumber=PIN, callerNumber=f"0{PIN}")
    assert (await agent.ok(NOTICE, **notice))["reportNotice"] == {"stored": True}
    async with rt.db.reading() as s:
        mails = list(await s.scalars(select(Email).where(Email.tenant_id == world.a.tenant_id)))
        entry = await s.scalar(select(AuditLog).where(AuditLog.action == "notice.report"))
    assert mails and all("„Brandschutz“" in m.body for m in mails), mails[0].body
    assert entry is not None
    assert entry.details["notice_id"] == f"n-{PIN}" and entry.details["agent_number"] == PIN
    # The repeat is recognised by its id: a scrubbed id would make it a new notice.
    assert (await agent.ok(NOTICE, **notice))["reportNotice"] == {"stored": False}


async def test_a_broadcast_report_scrubs_only_what_it_stores(gql, rt, world, monkeypatch):
    opened: list[uuid.UUID] = []
    real = known_secrets.for_tenant

    async def counting(rt_: Any, session: Any, tenant_id: uuid.UUID, *a: Any) -> Any:
        opened.append(tenant_id)
        return await real(rt_, session, tenant_id, *a)

    monkeypatch.setattr(known_secrets, "for_tenant", counting)
    agent = gql.as_(world.tokens["agent_a"])
    # A started event's detail (the number dialled) is not stored: nothing to scrub.
    started = _events(rt, 1, 1)[:1]
    started[0]["detail"] = "201"
    await agent.ok(REPORT, **_report(rt, started))
    assert opened == []
    ended = _events(rt, 1, 1)
    ended[-1]["detail"] = f"busy; password={PBX_PASSWORD}"
    await agent.ok(REPORT, **_report(rt, ended))
    assert len(opened) == 1
    # The same events again (a resend after a lost answer): stored before, not again.
    await agent.ok(REPORT, **_report(rt, ended))
    assert len(opened) == 1
    async with rt.db.reading() as s:
        details = list(
            await s.scalars(select(CallAttempt.detail).where(CallAttempt.detail.is_not(None)))
        )
    assert details == ["busy; password=***"]


async def test_a_number_under_a_secret_name_in_the_sip_error_is_hidden(gql, rt, world, clock):
    agent = gql.as_(world.tokens["agent_a"])
    params = {"status": 403, "pin": 90817263, "reason": f"Forbidden {PBX_PASSWORD}"}
    registration = sip(params=params)
    await agent.ok(
        HEALTH, **health(clock.now, pbxAdapter="swyx", dialer="sip", sipRegistration=registration)
    )
    async with rt.db.reading() as s:
        stored = await s.scalar(
            select(Installation.sip_error_params).where(Installation.id == world.a.installation_id)
        )
    assert stored == {"status": 403, "pin": "***", "reason": "Forbidden ***"}


async def test_an_old_pbx_password_is_still_known_after_many_pin_changes(rt, world):
    # Review point 7: the 20 latest commands with secrets were PIN changes, and the
    # password of an earlier verification was forgotten.
    now = rt.clock()

    def command(type_: str, secrets: dict[str, str], minutes: int) -> Command:
        return Command(
            id=uuid.uuid4(),
            tenant_id=world.a.tenant_id,
            type=type_,
            payload={},
            sealed_payload=rt.box.seal(json.dumps(secrets)),
            status=CommandStatus.SUCCEEDED,
            created_at=now + timedelta(minutes=minutes),
            expires_at=now + timedelta(minutes=minutes + 5),
        )

    async with rt.db.transaction() as s:
        s.add(command("verifyPbxCredentials", {"adminPassword": "Alt-Kennwort-1"}, 0))
        s.add_all(command("updateBroadcastAgent", {"pin": f"{5000 + i}"}, 1 + i) for i in range(30))
    async with rt.db.reading() as s:
        clean = await known_secrets.for_tenant(rt, s, world.a.tenant_id)
    assert clean("login with Alt-Kennwort-1 refused") == "login with *** refused"
    assert clean(f"{PBX_PASSWORD} 5001") == "*** 5001"  # a bare number is no PIN to hide
