"""The secrets the server holds for a tenant, opened only to scrub texts from its agents.

Every free text an agent reports (command errors and results, broadcast notes, call
details, SIP details) passes a `Scrubber` from `for_tenant(...)` before it is stored:
viewers read those texts, and a failing adapter may have put a secret into one
(issue 14, point 5; the rules are in `api.domain.scrub`).

Only strong values are looked up: the PBX password and the passwords of the tenant's
commands. PINs are not (a PIN is hidden by its context, `api.domain.scrub`), so the
cost does not grow with the number of groups.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.scrub import Scrubber
from api.models import Command, PbxSettings
from api.runtime import Runtime

# Commands whose secrets are PINs only: digits, hidden by their context, not looked up.
PIN_COMMANDS = ("enableBroadcast", "updateBroadcastAgent")
# The command table keeps every command; of those with passwords, the newest this many
# count (a PBX password changed more often than that is the bound, docs/decisions/
# secrets-in-errors.md).
PASSWORD_COMMANDS = 200


async def for_tenant(
    rt: Runtime, session: AsyncSession, tenant_id: uuid.UUID, extra: Iterable[object] = ()
) -> Scrubber:
    """A scrubber with the tenant's PBX password, the passwords its commands carried
    (earlier PBX passwords among them) and `extra` (those of the command being completed)."""
    secrets = [str(v) for v in extra if v is not None]
    password = await session.scalar(
        select(PbxSettings.admin_password_sealed).where(PbxSettings.tenant_id == tenant_id)
    )
    secrets += _opened(rt, password, payload=False)
    payloads = await session.scalars(
        select(Command.sealed_payload)
        .where(
            Command.tenant_id == tenant_id,
            Command.sealed_payload.is_not(None),
            Command.type.not_in(PIN_COMMANDS),
        )
        .order_by(Command.created_at.desc())
        .limit(PASSWORD_COMMANDS)
    )
    for payload in payloads:
        secrets += _opened(rt, payload, payload=True)
    return Scrubber(secrets)


def _opened(rt: Runtime, sealed: str | None, *, payload: bool) -> list[str]:
    if not sealed:
        return []
    try:
        text = rt.box.open(sealed)
    except ValueError:  # sealed under another key: it cannot be echoed by anyone either
        return []
    if not payload:
        return [text]
    values = json.loads(text)
    return [str(v) for v in values.values()] if isinstance(values, dict) else []
