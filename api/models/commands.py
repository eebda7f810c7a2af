"""Commands to a tenant's agent: the durable truth of what the PBX must do."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, CreatedMixin, IdMixin, str_enum
from api.models.enums import CommandStatus


class Command(IdMixin, CreatedMixin, Base):
    __tablename__ = "command"
    __table_args__ = (
        Index("ix_command_tenant_status_created", "tenant_id", "status", "created_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"))
    # Set when an installation takes the command; until then any of the
    # tenant's installations may.
    installation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("installation.id"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Secrets the agent needs (PBX password, PIN), Fernet-encrypted JSON.
    sealed_payload: Mapped[str | None] = mapped_column(Text)
    status: Mapped[CommandStatus] = mapped_column(
        str_enum(CommandStatus, "command_status"), default=CommandStatus.PENDING
    )
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
