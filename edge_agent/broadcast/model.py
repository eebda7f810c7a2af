"""Broadcasts, members and call events as the executor and the journal see them (pure)."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_agent.pbx.port import UserState


class Mode(enum.IntEnum):
    TEST = 1  # idle members only, the stored test announcement
    ALARM = 2  # everyone, running calls interrupted, the stored alarm announcement
    ALARM_RECORDED = 3  # as ALARM, with the message the caller recorded

    @property
    def wire(self) -> str:
        """The central service's `BroadcastMode` name."""
        return {1: "TEST", 2: "ALARM", 3: "ALARM_RECORDED"}[self.value]


# A member in one of these states is on the phone: test mode leaves them alone.
BUSY_STATES = frozenset(
    {
        UserState.SPEAKING_EXTERNAL,
        UserState.ALERTING,
        UserState.SPEAKING_INTERNAL,
        UserState.BUSY,
    }
)

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
# Stopped before its end: from the website (cancelBroadcast) or by phone (PIN, then 0).
CANCELLED = "cancelled"
# The detail of calls a stop ended and of members it left out (a code the website words).
STOPPED = "broadcastStopped"
# How a stop reached the agent: the central service's `TriggerSource` names.
STOP_VIAS = ("website", "phone", "sip")
# Event kinds the central service stores (the dialer's PLAYING and DTMF stay local);
# "held" and "resumed" need a central service that knows them (docs/decisions/sip-hold.md).
REPORTED_KINDS = frozenset(
    {"started", "ringing", "answered", "held", "resumed", "confirmed", "ended"}
)

# Codes the agent adds to a broadcast's note; the website words them (German, English).
JOURNAL_NOT_WRITABLE = "journalNotWritable"


@dataclass(frozen=True)
class Member:
    position: int
    pbx_id: str
    name: str
    extension: str | None
    # Why the member is not called at all (test mode: "skipped_busy"); None: called.
    skip: str | None = None


# Why an attempt began after the broadcast timeout, or why a member was not called.
AGENT_DOWN = "agent_down"  # the agent did not run: the job waited, or it was stopped
COMMAND_LATE = "command_late"  # the triggerBroadcast command reached the agent late
# No attempt reached the member before the timeout passed (every line busy, the dialer
# failing, calls unanswered...) and no outage covers the deadline.
DEADLINE_PASSED = "deadline_passed"
# The outcome of a member never called: the timeout left them out (a test broadcast),
# or the quorum made the call unnecessary.
NOT_CALLED = "not_called"


@dataclass(frozen=True)
class Late:
    """Why an attempt is late (or left out), with the outage behind it when one is known."""

    reason: str
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Event:
    seq: int
    pbx_id: str
    attempt_no: int
    kind: str
    at: datetime
    outcome: str | None = None
    detail: str | None = None
    late: Late | None = None


@dataclass(frozen=True)
class Stop:
    """Who stopped a broadcast (a user's name, or the caller's number), how, and when."""

    by: str | None
    via: str  # one of STOP_VIAS
    at: datetime
    reason: str | None = None  # what the website gave


@dataclass(frozen=True)
class Broadcast:
    id: str
    # "job" (the job service), "command" (triggerBroadcast) or "sip" (the agent's own IVR)
    source: str
    source_id: str
    group_pbx_id: str
    mode: int
    started_at: datetime
    deadline_at: datetime
    status: str = RUNNING
    caller_number: str | None = None
    caller_name: str | None = None
    announcement: str | None = None  # the file the calls play (set when it is prepared)
    quorum: int | None = None
    quorum_reached_at: datetime | None = None
    finished_at: datetime | None = None
    note: str | None = None
    acked_seq: int = 0
    final_acked: bool = False
    source_done: bool = False
    stop: Stop | None = None  # set once a stop was asked for (status CANCELLED at the end)


@dataclass(frozen=True)
class GroupPlan:
    """What the agent's cache says about the group a trigger names."""

    group_pbx_id: str
    members: tuple[Member, ...]
    quorum: int | None
    repetitions: int
    announcements: Mapping[str, str] = field(default_factory=dict)  # kind -> file name


def find_group(
    groups: Mapping[str, Mapping[str, Any]], agent_number: str | None, group_id: str | None
) -> str | None:
    """The broadcast group a trigger names, by group id or by its agent's number."""
    if group_id is not None and group_id in groups:
        return group_id
    if agent_number is not None:
        for gid, group in groups.items():
            if group.get("extension") == agent_number:
                return gid
    return None


def plan_group(
    group_pbx_id: str,
    cached_group: Mapping[str, Any],
    directory: Mapping[str, Any],
    mode: Mode,
    states: Mapping[str, int],
) -> GroupPlan:
    """The members to call, in the PBX's order, from the cached directory and user states.

    Test mode skips members the states show on the phone (or set to do not
    disturb); alarms call everyone. The group's own agent user is never called.
    """
    users = {u["id"]: u for u in directory.get("users", [])}
    group = next((g for g in directory.get("groups", []) if g["id"] == group_pbx_id), None)
    member_ids = list(group["memberIds"]) if group else []
    agent_id = cached_group.get("agentUserId")
    members: list[Member] = []
    for pbx_id in member_ids:
        if pbx_id == agent_id:
            continue
        user = users.get(pbx_id, {})
        skip = None
        state = states.get(pbx_id)
        if mode is Mode.TEST and state is not None:
            if state in BUSY_STATES:
                skip = f"busy ({UserState(state).name.lower()})"
            elif state == UserState.DO_NOT_DISTURB:
                skip = "do not disturb"
        members.append(
            Member(
                len(members), pbx_id, str(user.get("name") or pbx_id), user.get("extension"), skip
            )
        )
    quorum = cached_group.get("quorum")
    repetitions = cached_group.get("repetitions")
    announcements = {
        kind: str(a["file"])
        for kind, a in (cached_group.get("announcements") or {}).items()
        if isinstance(a, Mapping) and a.get("file")
    }
    return GroupPlan(
        group_pbx_id,
        tuple(members),
        quorum if isinstance(quorum, int) and quorum > 0 else None,
        repetitions if isinstance(repetitions, int) and 1 <= repetitions <= 5 else 2,
        announcements,
    )


def states_from_job(raw: object) -> dict[str, int]:
    """The member states the call-routing script sent along, when it did."""
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(k): v
        for k, v in raw.items()
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 8
    }


def summary(
    members: Sequence[Member],
    outcomes: Mapping[str, str],
    quorum_note: str,
    spared: Collection[str] = (),
) -> str:
    """One line for the log and the CLI: how many were reached, and who was not (the
    website words its own from the attempts). `spared`: members the quorum left out."""
    left_out = sum(
        1
        for m in members
        if m.skip is None and outcomes.get(m.pbx_id) == NOT_CALLED and m.pbx_id not in spared
    )
    called = [m for m in members if m.skip is None and outcomes.get(m.pbx_id) != NOT_CALLED]
    confirmed = sum(1 for m in called if outcomes.get(m.pbx_id) == "confirmed")
    parts = [f"{confirmed} of {len(called)} called members confirmed"]
    skipped = len(members) - len(called) - left_out - len(spared)
    if skipped:
        parts.append(f"{skipped} skipped (busy)")
    if left_out:
        parts.append(f"{left_out} not called (the timeout had passed)")
    unreached = [m.name for m in called if outcomes.get(m.pbx_id) != "confirmed"]
    if unreached and not quorum_note:
        shown = ", ".join(unreached[:10]) + (" …" if len(unreached) > 10 else "")
        parts.append(f"not confirmed: {shown}")
    if quorum_note:
        parts.append(quorum_note)
    return "; ".join(parts)
