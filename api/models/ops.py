"""Operations: the mail outbox and the watchdog's incidents."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, CreatedMixin, IdMixin, str_enum
from api.models.enums import EmailStatus, IncidentKind, Language


class Email(IdMixin, CreatedMixin, Base):
    """An outbox row, written in the same transaction as the event it reports."""

    __tablename__ = "email"
    __table_args__ = (Index("ix_email_status_next", "status", "next_attempt_at"),)

    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenant.id"), index=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[Language] = mapped_column(str_enum(Language, "language"))
    status: Mapped[EmailStatus] = mapped_column(
        str_enum(EmailStatus, "email_status"), default=EmailStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(300), unique=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]


class WatchdogIncident(IdMixin, Base):
    """A condition the watchdog saw at an installation, or a license notice.

    The two unique keys make a double mail structurally impossible: the sweep
    opens an incident with INSERT … ON CONFLICT DO NOTHING and writes its mails
    only when a row came back, in the same transaction (api/services/watchdog.py).
    """

    __tablename__ = "watchdog_incident"
    __table_args__ = (
        # At most one open incident per installation and kind.
        Index(
            "uq_watchdog_incident_open",
            "installation_id",
            "kind",
            unique=True,
            postgresql_where=text("closed_at IS NULL"),
            sqlite_where=text("closed_at IS NULL"),
        ),
        # One notice per license and stage (30, 7, 1 days before expiry; 0 once expired).
        UniqueConstraint("license_id", "kind", "stage_days"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    installation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("installation.id"))
    license_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("license.id"))
    kind: Mapped[IncidentKind] = mapped_column(str_enum(IncidentKind, "incident_kind"))
    detail: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime]
    notified_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    close_notified_at: Mapped[datetime | None]
    # License notices only: days before the end of validity (0: expired).
    stage_days: Mapped[int | None]
