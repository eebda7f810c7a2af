"""What a completed command changes centrally: the mirror follows the PBX.

Every command that touches the directory comes back with the agent's fresh
`directory` snapshot, succeeded or failed, so the website never shows a state
the PBX does not have.

Results may arrive out of order (one kept and resent later, issue 14, point 1,
review point 2): a result is always recorded as its command's outcome, but what it
changes is applied only if it is not older than what the mirror or the group
already holds: the snapshot by its command's time (mirror.py), a broadcast
setting only if no later command for the same group has succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.lost_triggers import AGENT_EXPIRED_CODE
from api.models import (
    BroadcastGroup,
    Command,
    CommandStatus,
    PbxGroup,
    PbxSettings,
    VerificationState,
)
from api.runtime import Runtime
from api.services import lost_triggers, mirror, trigger_source

# The commands that change one group's broadcast settings: a later one that succeeded
# makes an earlier one's result too old to apply.
BROADCAST_TYPES = ("enableBroadcast", "disableBroadcast", "updateBroadcastAgent")


@dataclass(frozen=True)
class Applied:
    directory_changed: bool


async def apply(
    rt: Runtime,
    session: AsyncSession,
    command: Command,
    ok: bool,
    result: Any,
    error: str | None,
    secrets: dict[str, Any],
) -> Applied:
    result = result if isinstance(result, dict) else {}
    tenant_id = command.tenant_id
    changed = False
    if "directory" in result:
        changed = await mirror.replace(
            rt, session, tenant_id, result["directory"], command.created_at
        )
    if command.type in BROADCAST_TYPES and ok and await _superseded(session, command):
        # Recorded as its outcome; what it set is older than what a later command set.
        return Applied(directory_changed=changed)
    if command.type == "verifyPbxCredentials":
        settings = await session.get(PbxSettings, tenant_id, with_for_update=True)
        # Only the check of what is stored now counts: settings changed while it
        # ran (another host, say) leave the state where the change put it.
        current = (
            settings is not None
            and settings.verification_state is VerificationState.PENDING
            and settings.host == command.payload.get("host")
            and settings.admin_user == command.payload.get("adminUser")
        )
        if settings is not None and current:
            settings.verification_state = (
                VerificationState.VERIFIED if ok else VerificationState.FAILED
            )
            settings.verified_at = rt.clock() if ok else settings.verified_at
            settings.verification_error = None if ok else (error or "the PBX refused the login")
    elif command.type == lost_triggers.TYPE:
        await late_trigger(rt, session, command, ok, result, error)
    elif ok and command.type == "enableBroadcast":
        changed = await _enabled(rt, session, command, result, secrets) or changed
    elif ok and command.type == "disableBroadcast":
        group_id = await _group_id(session, command)
        if group_id is not None:
            await session.execute(delete(BroadcastGroup).where(BroadcastGroup.group_id == group_id))
            changed = True
    elif ok and command.type == "updateBroadcastAgent":
        bg = await _broadcast_group(session, command)
        if bg is not None:
            if isinstance(result.get("extension"), str):
                bg.agent_extension = result["extension"][:32]
            if "pin" in secrets:
                bg.pin_sealed = rt.box.seal(str(secrets["pin"]))
            changed = True
    return Applied(directory_changed=changed)


async def late_trigger(
    rt: Runtime,
    session: AsyncSession,
    command: Command,
    ok: bool,
    result: dict[str, Any],
    error: str | None,
) -> None:
    """A `triggerBroadcast`'s outcome, in time or after its expiry: refused as expired, it
    is lost (not silently, once); run after all, a failed row recorded for it gives way
    to the broadcast's own (the agent took it up in the moment the sweep expired it)."""
    if command.type != lost_triggers.TYPE:
        return
    if ok:
        await lost_triggers.withdraw(rt, session, command)
        # An older agent's report does not say how the alarm was raised: this does.
        await trigger_source.from_command(session, command, result.get("broadcastId"))
    elif _expired_on_agent(result, error):
        await lost_triggers.record(rt, session, command, rt.clock())


async def _superseded(session: AsyncSession, command: Command) -> bool:
    """Whether a command for the same group, made after this one, has succeeded already
    (a resent result arriving late). Under the tenant's lock: results of one tenant are
    applied one after the other, each seeing those before it."""
    await mirror.lock_tenant(session, command.tenant_id)
    group = str(command.payload.get("groupPbxId"))
    later = await session.scalar(
        select(Command.id)
        .where(
            Command.tenant_id == command.tenant_id,
            Command.type.in_(BROADCAST_TYPES),
            Command.status == CommandStatus.SUCCEEDED,
            Command.created_at > command.created_at,
            Command.id != command.id,
            Command.payload["groupPbxId"].as_string() == group,
        )
        .limit(1)
    )
    return later is not None


def _expired_on_agent(result: dict[str, Any], error: str | None) -> bool:
    """The agent refused the command as expired (an agent before the code: by its words)."""
    code = result.get("errorCode") == AGENT_EXPIRED_CODE
    return code or (error or "").startswith("expired before the agent could run it")


async def _group_id(session: AsyncSession, command: Command) -> Any:
    return await session.scalar(
        select(PbxGroup.id).where(
            PbxGroup.tenant_id == command.tenant_id,
            PbxGroup.pbx_id == str(command.payload.get("groupPbxId")),
        )
    )


async def _broadcast_group(session: AsyncSession, command: Command) -> BroadcastGroup | None:
    group_id = await _group_id(session, command)
    if group_id is None:
        return None
    return await session.scalar(
        select(BroadcastGroup).where(BroadcastGroup.group_id == group_id).with_for_update()
    )


async def _enabled(
    rt: Runtime,
    session: AsyncSession,
    command: Command,
    result: dict[str, Any],
    secrets: dict[str, Any],
) -> bool:
    group_id = await _group_id(session, command)
    agent_pbx_id, extension = result.get("agentUserId"), result.get("extension")
    if group_id is None or not isinstance(extension, str) or "pin" not in secrets:
        return False
    agent_id = await mirror.pbx_user_id(session, command.tenant_id, str(agent_pbx_id))
    bg = await _broadcast_group(session, command)
    if bg is None:
        bg = BroadcastGroup(tenant_id=command.tenant_id, group_id=group_id)
        session.add(bg)
    bg.agent_user_id = agent_id
    bg.agent_name = str(command.payload.get("agentName", "Rundruf"))[:200]
    bg.agent_extension = extension[:32]
    bg.pin_sealed = rt.box.seal(str(secrets["pin"]))
    return True
