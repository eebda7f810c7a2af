"""Jobs as the call-routing script posts them and as they lie on disk (pure: no I/O).

`JobRequest.parse` checks a POST body; `Job.parse` checks a job file; both raise
a `BadRequest` naming the field at fault. Fields the contract does not name are
ignored: a newer routing script that sends one more field must still raise its
alarm on an older job service.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from swyx_jobservice.audio import Recording, inspect_wav
from swyx_jobservice.errors import BadRequest, PayloadTooLarge
from swyx_jobservice.text import checked_text, shown, usable_id

KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_MEMBER_STATE = 8
CALLER_NUMBER_MAX = 64
CALLER_NAME_MAX = 128
MEMBER_ID_MAX = 128
_WHITESPACE = re.compile(rb"\s+")


class Mode(IntEnum):
    # Not a broadcast: stop the group's running broadcast (issue 17; the menu's 0). Kept
    # and served like any job, so a stop by phone is as durable as an alarm.
    STOP = 0
    TEST = 1  # idle members only
    ALARM_STORED = 2  # everyone, the group's stored alarm message
    ALARM_RECORDED = 3  # everyone, the message the caller just recorded


@dataclass(frozen=True)
class Limits:
    max_audio_bytes: int
    max_recording_seconds: float


@dataclass(frozen=True)
class Audio:
    """A recording sent in the body: its bytes and what they were checked to be."""

    data: bytes
    recording: Recording


def received_time(data: dict[str, Any]) -> datetime:
    """`receivedAt` of a stored job or notice; BadRequest unless an aware ISO time."""
    received = data.get("receivedAt")
    try:
        received_at = datetime.fromisoformat(received) if isinstance(received, str) else None
    except ValueError:
        received_at = None
    if received_at is None or received_at.tzinfo is None:
        raise BadRequest("receivedAt must be an ISO date-time with time zone", "receivedAt")
    return received_at


def _text(body: dict[str, Any], name: str, *, max_len: int, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", name)
    # What addresses something is used as it is or refused: a cleaned id names nothing.
    return checked_text(value, name, max_len)


def _shown(body: dict[str, Any], name: str, *, max_len: int, required: bool) -> str | None:
    """A caller's name or number as the PBX gave it: only shown, so cleaned and cut, never
    refused (a refused job is an alarm the caller hears fail; issue 14, point 1)."""
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", name)
    return shown(value, max_len)


def _nonempty(body: dict[str, Any], name: str, *, max_len: int) -> str | None:
    value = _text(body, name, max_len=max_len, required=False)
    if value == "":
        raise BadRequest(f"{name} must not be empty (null when absent)", name)
    return value


def _mode(body: dict[str, Any]) -> Mode:
    value = body.get("mode")
    if value is None:
        raise BadRequest("mode is required", "mode")
    # bool is an int in Python, but `true` is no mode.
    if type(value) is not int or value not in {m.value for m in Mode}:
        raise BadRequest(
            "mode must be 1 (test), 2 (alarm, stored message) or 3 (alarm, recorded message), "
            "or 0 (stop the group's running broadcast)",
            "mode",
        )
    return Mode(value)


def _key(body: dict[str, Any]) -> str:
    value = body.get("idempotencyKey")
    if value is None:
        raise BadRequest("idempotencyKey is required", "idempotencyKey")
    if not isinstance(value, str) or not KEY.fullmatch(value):
        raise BadRequest(
            "idempotencyKey must be 1-128 characters of A-Z a-z 0-9 . _ : -", "idempotencyKey"
        )
    return value


def _member_states(body: dict[str, Any]) -> dict[str, int] | None:
    value = body.get("memberStates")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("memberStates must be an object of user id to state", "memberStates")
    # PBX data, a hint only (the agent reads a member's state itself when it lacks one):
    # an entry that cannot be used is left out, never a reason to refuse the alarm.
    return {
        user: state
        for user, state in value.items()
        if usable_id(user, MEMBER_ID_MAX) and type(state) is int and 0 <= state <= MAX_MEMBER_STATE
    }


def _addressing(body: dict[str, Any]) -> tuple[str | None, str | None]:
    agent = _nonempty(body, "agentNumber", max_len=64)
    group = _nonempty(body, "groupId", max_len=128)
    if agent is None and group is None:
        raise BadRequest("agentNumber or groupId is required", "agentNumber")
    return agent, group


def _base64_audio(value: Any, limits: Limits) -> Audio:
    if not isinstance(value, str):
        raise BadRequest("recording must be a base64 string", "recording")
    # Checked before decoding, so a huge string costs no second copy.
    if len(value) // 4 * 3 > limits.max_audio_bytes + 2:
        raise PayloadTooLarge(f"recording larger than {limits.max_audio_bytes} bytes", "recording")
    try:
        # Line breaks are tolerated (MIME-style encoders wrap at 76), any other
        # character outside the alphabet is an error, not silently dropped.
        data = base64.b64decode(_WHITESPACE.sub(b"", value.encode("ascii")), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadRequest("recording is not valid base64", "recording") from None
    if not data:
        raise BadRequest("recording is empty", "recording")
    recording = inspect_wav(
        data,
        max_bytes=limits.max_audio_bytes,
        max_seconds=limits.max_recording_seconds,
        field="recording",
    )
    return Audio(data, recording)


def _audio_source(
    body: dict[str, Any], mode: Mode, limits: Limits
) -> tuple[Audio | None, str | None]:
    inline = body.get("recording")
    path = _nonempty(body, "recordingPath", max_len=4096)
    if mode is not Mode.ALARM_RECORDED:
        if inline is not None:
            raise BadRequest(f"mode {mode.value} takes no recording", "recording")
        if path is not None:
            raise BadRequest(f"mode {mode.value} takes no recordingPath", "recordingPath")
        return None, None
    if inline is None and path is None:
        raise BadRequest("mode 3 needs a recording or a recordingPath", "recording")
    if inline is not None and path is not None:
        raise BadRequest("give either recording or recordingPath, not both", "recording")
    if path is not None:
        return None, path
    return _base64_audio(inline, limits), None


@dataclass(frozen=True)
class JobRequest:
    """A job as the routing script posts it, checked but not yet accepted."""

    agent_number: str | None
    group_id: str | None
    mode: Mode
    caller_number: str
    caller_name: str | None
    idempotency_key: str
    member_states: dict[str, int] | None
    audio: Audio | None  # mode 3 with the WAV in the body
    recording_path: str | None  # mode 3 with the WAV on this host; read after parse

    @classmethod
    def parse(cls, body: Any, limits: Limits) -> JobRequest:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        # The key first: a client that forgot it cannot retry safely, the
        # most important thing to tell it.
        key = _key(body)
        agent, group = _addressing(body)
        mode = _mode(body)
        caller_number = _shown(body, "callerNumber", max_len=CALLER_NUMBER_MAX, required=True)
        assert caller_number is not None  # required=True
        audio, path = _audio_source(body, mode, limits)
        return cls(
            agent_number=agent,
            group_id=group,
            mode=mode,
            caller_number=caller_number,
            caller_name=_shown(body, "callerName", max_len=CALLER_NAME_MAX, required=False),
            idempotency_key=key,
            member_states=_member_states(body),
            audio=audio,
            recording_path=path,
        )


@dataclass(frozen=True)
class Job:
    """An accepted job: what lies in ``jobs/<id>.json`` and what the agent gets."""

    id: str
    received_at: datetime
    agent_number: str | None
    group_id: str | None
    mode: Mode
    caller_number: str
    caller_name: str | None
    idempotency_key: str
    member_states: dict[str, int] | None
    recording_path: str | None  # where the PBX had the file; the copy is <id>.wav
    recording: Recording | None

    @classmethod
    def accept(
        cls, request: JobRequest, *, id: str, received_at: datetime, recording: Recording | None
    ) -> Job:
        return cls(
            id=id,
            received_at=received_at,
            agent_number=request.agent_number,
            group_id=request.group_id,
            mode=request.mode,
            caller_number=request.caller_number,
            caller_name=request.caller_name,
            idempotency_key=request.idempotency_key,
            member_states=request.member_states,
            recording_path=request.recording_path,
            recording=recording,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "receivedAt": self.received_at.isoformat(timespec="microseconds"),
            "agentNumber": self.agent_number,
            "groupId": self.group_id,
            "mode": self.mode.value,
            "callerNumber": self.caller_number,
            "callerName": self.caller_name,
            "idempotencyKey": self.idempotency_key,
            "memberStates": self.member_states,
            "recordingPath": self.recording_path,
            "recording": self.recording.to_json() if self.recording else None,
        }

    @classmethod
    def parse(cls, data: Any) -> Job:
        if not isinstance(data, dict):
            raise BadRequest("a job must be a JSON object")
        job_id = data.get("id")
        if not isinstance(job_id, str) or not is_job_id(job_id):
            raise BadRequest("id must be a UUID4 string", "id")
        received_at = received_time(data)
        mode = _mode(data)
        agent, group = _addressing(data)
        caller_number = _shown(data, "callerNumber", max_len=CALLER_NUMBER_MAX, required=True)
        assert caller_number is not None  # required=True
        raw_recording = data.get("recording")
        recording = Recording.parse(raw_recording) if raw_recording is not None else None
        if (recording is None) != (mode is not Mode.ALARM_RECORDED):
            raise BadRequest("mode 3 jobs, and only they, have a recording", "recording")
        return cls(
            id=job_id,
            received_at=received_at,
            agent_number=agent,
            group_id=group,
            mode=mode,
            caller_number=caller_number,
            caller_name=_shown(data, "callerName", max_len=CALLER_NAME_MAX, required=False),
            idempotency_key=_key(data),
            member_states=_member_states(data),
            recording_path=_nonempty(data, "recordingPath", max_len=4096),
            recording=recording,
        )


def is_job_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4
    except ValueError:
        return False


def differences(job: Job, request: JobRequest) -> list[str]:
    """The fields in which a repeated post differs from the job its key made.

    A retry whose recordingPath is the same counts as the same job even when
    the PBX has deleted that file since: the copy taken at accept time is what
    the broadcast plays.
    """
    pairs: list[tuple[str, Any, Any]] = [
        ("agentNumber", job.agent_number, request.agent_number),
        ("groupId", job.group_id, request.group_id),
        ("mode", job.mode, request.mode),
        ("callerNumber", job.caller_number, request.caller_number),
        ("callerName", job.caller_name, request.caller_name),
        ("memberStates", job.member_states, request.member_states),
        ("recordingPath", job.recording_path, request.recording_path),
    ]
    different = [name for name, first, again in pairs if first != again]
    stored_sha = job.recording.sha256 if job.recording else None
    if (
        request.audio
        and job.recording_path is None
        and request.audio.recording.sha256 != stored_sha
    ):
        different.append("recording")
    return different
