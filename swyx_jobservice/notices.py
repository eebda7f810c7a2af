"""Notices as the call-routing script posts them and as they lie on disk (pure: no I/O).

A notice tells the tenant something about the agent number that is no job:
for now only ``wrongPins`` (10 wrong PINs within 10 minutes for one group).
`NoticeRequest.parse` checks a POST body, `Notice.parse` a notice file; both
raise a `BadRequest` naming the field at fault. Unknown fields are ignored, as
for jobs: a newer routing script must not be refused by an older service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from swyx_jobservice.errors import BadRequest
from swyx_jobservice.jobs import is_job_id, received_time
from swyx_jobservice.text import checked_text, shown

KINDS = ("wrongPins",)
MAX_COUNT = 1_000_000


def _string(body: dict[str, Any], name: str, *, max_len: int, empty_ok: bool) -> str:
    value = body.get(name)
    if value is None:
        raise BadRequest(f"{name} is required", name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", name)
    if not value and not empty_ok:
        raise BadRequest(f"{name} must not be empty", name)
    # The tenant reads these in a mail: no control characters, as for jobs. The caller's
    # number is PBX text, only shown: cleaned and cut, never refused (as for jobs).
    if name == "callerNumber":
        return shown(value, max_len)
    return checked_text(value, name, max_len)


def _kind(body: dict[str, Any]) -> str:
    value = body.get("kind")
    if value is None:
        raise BadRequest("kind is required", "kind")
    if value not in KINDS:
        raise BadRequest(f"kind must be one of: {', '.join(KINDS)}", "kind")
    return str(value)


def _count(body: dict[str, Any]) -> int:
    value = body.get("count")
    if value is None:
        raise BadRequest("count is required", "count")
    # bool is an int in Python, but `true` is no count.
    if type(value) is not int or not 1 <= value <= MAX_COUNT:
        raise BadRequest(f"count must be an integer from 1 to {MAX_COUNT}", "count")
    return value


@dataclass(frozen=True)
class NoticeRequest:
    """A notice as the routing script posts it, checked but not yet stored."""

    kind: str
    agent_number: str
    caller_number: str  # "" for an anonymous caller
    count: int

    @classmethod
    def parse(cls, body: Any) -> NoticeRequest:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return cls(
            kind=_kind(body),
            agent_number=_string(body, "agentNumber", max_len=64, empty_ok=False),
            caller_number=_string(body, "callerNumber", max_len=64, empty_ok=True),
            count=_count(body),
        )


@dataclass(frozen=True)
class Notice:
    """A stored notice: what lies in ``notices/<id>.json`` and what the agent gets."""

    id: str
    received_at: datetime
    kind: str
    agent_number: str
    caller_number: str
    count: int

    @classmethod
    def accept(cls, request: NoticeRequest, *, id: str, received_at: datetime) -> Notice:
        return cls(
            id=id,
            received_at=received_at,
            kind=request.kind,
            agent_number=request.agent_number,
            caller_number=request.caller_number,
            count=request.count,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "receivedAt": self.received_at.isoformat(timespec="microseconds"),
            "kind": self.kind,
            "agentNumber": self.agent_number,
            "callerNumber": self.caller_number,
            "count": self.count,
        }

    @classmethod
    def parse(cls, data: Any) -> Notice:
        request = NoticeRequest.parse(data)
        notice_id = data.get("id")
        if not isinstance(notice_id, str) or not is_notice_id(notice_id):
            raise BadRequest("id must be a UUID4 string", "id")
        return cls.accept(request, id=notice_id, received_at=received_time(data))


def is_notice_id(value: str) -> bool:
    return is_job_id(value)  # notices have UUID4 ids, as jobs do
