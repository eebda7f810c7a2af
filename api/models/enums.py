"""Closed sets of values stored in the database (plain Python, shared with the domain)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    TENANT_VIEWER = "tenant_viewer"


class Language(enum.StrEnum):
    DE = "de"
    EN = "en"


class VerificationState(enum.StrEnum):
    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


class AnnouncementKind(enum.StrEnum):
    TEST = "test"
    ALARM = "alarm"


class AnnouncementSource(enum.StrEnum):
    UPLOAD = "upload"
    TTS = "tts"


class AnnouncementStatus(enum.StrEnum):
    PENDING = "pending"  # TTS queued, no audio yet
    READY = "ready"
    FAILED = "failed"


class CommandStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class BroadcastMode(enum.IntEnum):
    TEST = 1
    ALARM = 2
    ALARM_RECORDED = 3


class BroadcastStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CallOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    FAILED = "failed"
    SKIPPED_BUSY = "skipped_busy"
    # A test broadcast's member whose timeout passed before their call (issue 14, point 11).
    NOT_CALLED = "not_called"


class LateReason(enum.StrEnum):
    """Why an attempt began after the broadcast timeout, or a member was not called."""

    AGENT_DOWN = "agent_down"  # the agent did not run: the job waited, or it was stopped
    COMMAND_LATE = "command_late"  # the triggerBroadcast command reached the agent late
    DEADLINE_PASSED = "deadline_passed"  # no attempt had reached the member by the timeout


class TriggerSource(enum.StrEnum):
    """How an alarm was raised: the history says so next to the caller."""

    PHONE = "phone"  # a trigger call through the PBX's call routing and the job service
    SIP = "sip"  # a trigger call the agent answered itself over SIP (issue 16)
    WEBSITE = "website"  # triggerBroadcast from the website


class PbxUserState(enum.IntEnum):
    """SwyxWare's user states, as its PBXConfig object reports them."""

    UNAVAILABLE = 0
    LOGGED_OFF = 1
    LOGGED_ON = 2
    SPEAKING_EXTERNAL = 3
    ALERTING = 4
    SPEAKING_INTERNAL = 5
    AWAY = 6
    DO_NOT_DISTURB = 7
    BUSY = 8


class EmailStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class IncidentKind(enum.StrEnum):
    HEARTBEAT_MISSED = "heartbeat_missed"
    PBX_UNREACHABLE = "pbx_unreachable"
    JOBSERVICE_UNREACHABLE = "jobservice_unreachable"
    ALARM_SERVICE_FAILED = "alarm_service_failed"
    SIP_REGISTRATION_FAILED = "sip_registration_failed"
    JOURNAL_NOT_WRITABLE = "journal_not_writable"
    LICENSE_EXPIRING = "license_expiring"
    LICENSE_EXPIRED = "license_expired"


class PbxAdapter(enum.StrEnum):
    """What the agent drives the PBX with (RUNDRUF_AGENT_PBX)."""

    SIM = "sim"  # the SwyxWare simulator: demo and tests only
    SWYX = "swyx"


class DialerKind(enum.StrEnum):
    """How the agent places alarm calls (RUNDRUF_AGENT_DIALER)."""

    SIM = "sim"  # simulated calls: demo and tests only
    SIP = "sip"


class SipRegistrationState(enum.StrEnum):
    """The SIP dialer's registration at the PBX, as its agent last reported it."""

    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    DISABLED = "disabled"
