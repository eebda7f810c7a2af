"""GraphQL enums: the very enums the models store (Strawberry maps plain Enums)."""

from api.models import (
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    BroadcastMode,
    BroadcastStatus,
    CallOutcome,
    CommandStatus,
    IncidentKind,
    Language,
    PbxUserState,
    Role,
    VerificationState,
)

__all__ = [
    "AnnouncementKind",
    "AnnouncementSource",
    "AnnouncementStatus",
    "BroadcastMode",
    "BroadcastStatus",
    "CallOutcome",
    "CommandStatus",
    "IncidentKind",
    "Language",
    "PbxUserState",
    "Role",
    "VerificationState",
]
