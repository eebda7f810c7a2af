"""The audit log: who changed what, written in the same transaction as the change."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.models import AuditLog
from api.services.actor import Actor


def record(
    session: AsyncSession,
    actor: Actor | None,
    action: str,
    *,
    tenant_id: uuid.UUID | None,
    target: object | None = None,
    **details: Any,
) -> None:
    session.add(
        AuditLog(
            tenant_id=tenant_id,
            actor_user_id=actor.user_id if actor else None,
            action=action,
            target=str(target) if target is not None else None,
            details=details,
        )
    )
