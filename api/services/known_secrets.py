"""The secrets the server holds for a tenant, opened only to scrub texts from its agents.

Every text an agent or the job service reports (command errors, broadcast notes,
call details, SIP details, notices) passes `for_tenant(...)` before it is stored:
viewers read those texts, and a failing adapter may have put a secret into one
(issue 14, point 5; the rules are in `api.domain.scrub`).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.domain.scrub import scrub
from api.models import BroadcastGroup, Command, CommandStatus, PbxSettings
from api.runtime import Runtime

OPEN = (CommandStatus.PENDING, CommandStatus.DELIVERED)
# Besides the open ones, the secrets of this many of the latest commands count.
RECENT_COMMANDS = 20

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Scrubber:
    secrets: tuple[str, ...]

    def __call__(self, text: str | None) -> str | None:
        return None if text is None else scrub(text, self.secrets)

    def fields(self, value: T) -> T:
        """A dataclass with each of its text fields scrubbed."""
        assert dataclasses.is_dataclass(value) and not isinstance(value, type)
        texts = {
            f.name: scrub(v, self.secrets)
            for f in dataclasses.fields(value)
            if isinstance(v := getattr(value, f.name), str)
        }
        return dataclasses.replace(value, **texts)


async def for_tenant(
    rt: Runtime, session: AsyncSession, tenant_id: uuid.UUID, extra: Iterable[object] = ()
) -> Scrubber:
    """The tenant's PBX password, its groups' PINs and the secrets of its open and latest
    commands (a new PIN on its way), with `extra` (those of the command being completed)."""
    sealed: list[str] = []
    password = await session.scalar(
        select(PbxSettings.admin_password_sealed).where(PbxSettings.tenant_id == tenant_id)
    )
    sealed += [password] if password else []
    sealed += await session.scalars(
        select(BroadcastGroup.pin_sealed).where(BroadcastGroup.tenant_id == tenant_id)
    )
    with_secrets = (Command.tenant_id == tenant_id, Command.sealed_payload.is_not(None))
    payloads = [
        *await session.scalars(
            select(Command.sealed_payload).where(*with_secrets, Command.status.in_(OPEN))
        ),
        # A PIN whose change failed is still the one its administrator meant to use.
        *await session.scalars(
            select(Command.sealed_payload)
            .where(*with_secrets)
            .order_by(Command.created_at.desc())
            .limit(RECENT_COMMANDS)
        ),
    ]
    secrets = [str(v) for v in extra if v is not None]
    for one in sealed:
        secrets += _opened(rt, one, payload=False)
    for payload in payloads:
        secrets += _opened(rt, payload, payload=True)
    return Scrubber(tuple(dict.fromkeys(secrets)))


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
