"""The tenant's PBX: settings, the directory mirror and broadcast groups.

The mirror tables (users, groups, members) change only when the agent reports
what the PBX did; the website never writes them directly.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, CreatedMixin, IdMixin, str_enum, utcnow
from api.models.enums import VerificationState


class PbxSettings(Base):
    __tablename__ = "pbx_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(255))
    admin_user: Mapped[str | None] = mapped_column(String(200))
    admin_password_sealed: Mapped[str | None] = mapped_column(Text)
    poll_interval_seconds: Mapped[int] = mapped_column(default=60)
    broadcast_timeout_seconds: Mapped[int] = mapped_column(default=300)
    verification_state: Mapped[VerificationState] = mapped_column(
        str_enum(VerificationState, "verification_state"), default=VerificationState.UNVERIFIED
    )
    verification_error: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PbxUser(IdMixin, Base):
    __tablename__ = "pbx_user"
    __table_args__ = (UniqueConstraint("tenant_id", "pbx_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    pbx_id: Mapped[str] = mapped_column(String(64))  # the PBX's own id
    name: Mapped[str] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    # SwyxWare user state (PbxUserState) as last reported; None when unknown.
    state: Mapped[int | None] = mapped_column(SmallInteger)
    # Call-routing-only users (the broadcast agents) do not use a license.
    callrouting_only: Mapped[bool] = mapped_column(default=False)
    # As of when: the creation time of the command whose snapshot wrote the row; an
    # older snapshot never replaces it (api/services/mirror.py).
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class PbxGroup(IdMixin, Base):
    __tablename__ = "pbx_group"
    __table_args__ = (UniqueConstraint("tenant_id", "pbx_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    pbx_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)  # as PbxUser.synced_at


class PbxGroupMember(Base):
    __tablename__ = "pbx_group_member"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pbx_group.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pbx_user.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)


class BroadcastGroup(IdMixin, CreatedMixin, Base):
    """A PBX group turned into a broadcast group, with its agent user and PIN."""

    __tablename__ = "broadcast_group"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pbx_group.id", ondelete="CASCADE"), unique=True
    )
    agent_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pbx_user.id", ondelete="SET NULL")
    )
    agent_name: Mapped[str] = mapped_column(String(200))
    agent_extension: Mapped[str] = mapped_column(String(32))
    # Encrypted, not hashed: tenant admins are shown the PIN.
    pin_sealed: Mapped[str] = mapped_column(Text)
    # Stop calling once this many members confirmed; None calls everyone.
    quorum: Mapped[int | None]
    repetitions: Mapped[int] = mapped_column(default=2)
