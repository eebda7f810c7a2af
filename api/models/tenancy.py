"""Tenants, licenses, users, sessions, installations, login counters and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from api.models.base import Base, CreatedMixin, IdMixin, str_enum, utcnow
from api.models.enums import DialerKind, Language, PbxAdapter, Role, SipRegistrationState


class Tenant(IdMixin, CreatedMixin, Base):
    __tablename__ = "tenant"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    language: Mapped[Language] = mapped_column(str_enum(Language, "language"), default=Language.DE)
    # Where the watchdog's mails to the customer go.
    contact_email: Mapped[str | None] = mapped_column(String(320))
    active: Mapped[bool] = mapped_column(default=True)
    deactivated_at: Mapped[datetime | None]


class License(IdMixin, CreatedMixin, Base):
    __tablename__ = "license"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    # The key is shown once; its first characters stay visible to tell keys apart.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    seats: Mapped[int]
    valid_until: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "app_user"

    # None for platform admins, who belong to no tenant.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenant.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    password_hash: Mapped[str] = mapped_column(String(200))
    language: Mapped[Language] = mapped_column(str_enum(Language, "language"), default=Language.DE)
    active: Mapped[bool] = mapped_column(default=True)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    tenant: Mapped[Tenant | None] = relationship(lazy="raise")


class Session(IdMixin, CreatedMixin, Base):
    """A signed-in browser or API client; the token itself is never stored."""

    __tablename__ = "session"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginCounter(Base):
    """One counter of the login throttle: a pair, an account, an address or a
    known device (docs/decisions/login-throttle.md). Deleted a window after its
    last failure; the table is capped, untrusted counters evicted first."""

    __tablename__ = "login_counter"
    __table_args__ = (
        Index("ix_login_counter_updated_at", "updated_at"),
        Index("ix_login_counter_trusted_updated_at", "trusted", "updated_at"),
    )

    # A keyed hash of the counter's kind and what it counts (never an e-mail).
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A known device's counter, evicted last when the table is full.
    trusted: Mapped[bool]
    failures: Mapped[int]
    next_allowed_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Installation(IdMixin, CreatedMixin, Base):
    """One customer agent: what it last reported and whether it may connect."""

    __tablename__ = "installation"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    license_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("license.id"), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_heartbeat_at: Mapped[datetime | None]
    # The agent's own clock when it made the report: a report older than the
    # last one never moves the heartbeat back.
    last_report_at: Mapped[datetime | None]
    pbx_reachable: Mapped[bool | None]
    jobservice_reachable: Mapped[bool | None]
    alarm_service_ok: Mapped[bool | None]
    # The broadcast journal on the agent's disk can be written (null: an older agent).
    journal_writable: Mapped[bool | None]
    participant_count: Mapped[int | None]
    # What it really runs on (null: an agent older than these fields).
    pbx_adapter: Mapped[PbxAdapter | None] = mapped_column(str_enum(PbxAdapter, "pbx_adapter"))
    dialer: Mapped[DialerKind | None] = mapped_column(str_enum(DialerKind, "dialer_kind"))
    # The SIP dialer's registration at the PBX (null: no SIP dialer, or not reported).
    sip_registration: Mapped[SipRegistrationState | None] = mapped_column(
        str_enum(SipRegistrationState, "sip_registration_state")
    )
    sip_registration_since: Mapped[datetime | None]
    # Its last error: a code the website and mails put into words, with parameters.
    sip_error_code: Mapped[str | None] = mapped_column(String(32))
    sip_error_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sip_error_detail: Mapped[str | None] = mapped_column(String(200))
    sip_error_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditLog(IdMixin, Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant_at", "tenant_id", "at"),
        # The platform admin's log of every tenant, and the filter by user (issue 17).
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor_user_id", "at"),
    )

    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenant.id"))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    # Never secrets: the service layer writes only non-secret details here.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    client: Mapped[str | None] = mapped_column(Text)
