"""GraphQL enums: the very enums the models and the domain use (Strawberry maps plain Enums)."""

from api.domain.broadcast_outcome import BroadcastOutcome
from api.domain.connection import AgentState
from api.models import (
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    BroadcastMode,
    BroadcastStatus,
    CallOutcome,
    CommandStatus,
    DialerKind,
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

__all__ = [
    "AgentState",
    "AnnouncementKind",
    "AnnouncementSource",
    "AnnouncementStatus",
    "BroadcastMode",
    "BroadcastOutcome",
    "BroadcastStatus",
    "CallOutcome",
    "CommandStatus",
    "DialerKind",
    "IncidentKind",
    "Language",
    "LateReason",
    "PbxAdapter",
    "PbxUserState",
    "Role",
    "SipRegistrationState",
    "TriggerSource",
    "VerificationState",
]
