"""Database models (SQLAlchemy 2, typed). Importing this registers every table."""

from api.models.base import Base, utcnow
from api.models.commands import Command
from api.models.enums import (
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    BroadcastMode,
    BroadcastStatus,
    CallOutcome,
    CommandStatus,
    DialerKind,
    EmailStatus,
    IncidentKind,
    Language,
    LateReason,
    PbxAdapter,
    PbxUserState,
    Role,
    SipRegistrationState,
    TriggerSource,
    VerificationState,
)
from api.models.history import Broadcast, CallAttempt
from api.models.media import Announcement, AudioBlob
from api.models.ops import Email, WatchdogIncident
from api.models.pbx import BroadcastGroup, PbxGroup, PbxGroupMember, PbxSettings, PbxUser
from api.models.tenancy import (
    AuditLog,
    Installation,
    License,
    LoginCounter,
    Session,
    Tenant,
    User,
)

__all__ = [
    "Announcement",
    "AnnouncementKind",
    "AnnouncementSource",
    "AnnouncementStatus",
    "AudioBlob",
    "AuditLog",
    "Base",
    "Broadcast",
    "BroadcastGroup",
    "BroadcastMode",
    "BroadcastStatus",
    "CallAttempt",
    "CallOutcome",
    "Command",
    "CommandStatus",
    "DialerKind",
    "Email",
    "EmailStatus",
    "IncidentKind",
    "Installation",
    "Language",
    "LateReason",
    "License",
    "LoginCounter",
    "PbxAdapter",
    "PbxGroup",
    "PbxGroupMember",
    "PbxSettings",
    "PbxUser",
    "PbxUserState",
    "Role",
    "Session",
    "SipRegistrationState",
    "Tenant",
    "TriggerSource",
    "User",
    "VerificationState",
    "WatchdogIncident",
    "utcnow",
]
