"""Takes triggers (jobs from the job service, `triggerBroadcast` commands) and runs them.

Everything a broadcast needs comes from the agent's local cache (groups,
members, announcements) and the PBX, never from the central service, so an
alarm goes out while the server is unreachable. A trigger is accepted once:
the journal knows each job and command id, also after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_agent.broadcast import audio
from edge_agent.broadcast.channels import Channels
from edge_agent.broadcast.journal import RESUME_GAP, Journal
from edge_agent.broadcast.model import (
    AGENT_DOWN,
    COMMAND_LATE,
    FAILED,
    RUNNING,
    Broadcast,
    GroupPlan,
    Late,
    Member,
    Mode,
    Stop,
    find_group,
    plan_group,
    states_from_job,
)
from edge_agent.broadcast.runner import BroadcastRun, CallSettings
from edge_agent.cache import LocalCache
from edge_agent.command_clock import aware_time
from edge_agent.dialer.port import Dialer
from edge_agent.errors import AgentError
from edge_agent.ivr import definition as ivr_definition
from edge_agent.ivr.prompts import PROMPT_DIR, language_of
from edge_agent.pbx.errors import PbxError
from edge_agent.pbx.port import Pbx, UserState

log = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[bytes]]
RESTART_PAUSE_S = 2.0
RESUME_ASK_S = 3.0  # how long a resumed broadcast waits for the server's last event number


@dataclass(frozen=True)
class Trigger:
    source: str  # "job", "command" or "sip" (the agent answered the trigger call itself)
    source_id: str
    mode: Mode
    agent_number: str | None = None
    group_id: str | None = None
    caller_number: str | None = None
    caller_name: str | None = None
    states: dict[str, int] = field(default_factory=dict)
    recording: Fetch | None = None  # mode 3: fetches the caller's message
    # When the alarm was raised: the job service took the job, or the website the command.
    # The broadcast timeout counts from here, not from when a late agent took it up.
    raised_at: datetime | None = None

    def outage(self, taken_up: datetime) -> Late | None:
        """Why the trigger reached the agent only now, if it waited at all."""
        if self.source == "sip":  # the agent took the call itself: nothing waited
            return None
        if self.raised_at is None or self.raised_at >= taken_up:
            return None
        reason = AGENT_DOWN if self.source == "job" else COMMAND_LATE
        return Late(reason, self.raised_at, taken_up)


@dataclass(frozen=True)
class Accepted:
    """What `Broadcasts.admit` did with a trigger."""

    id: str
    created: bool  # journaled by this call (False: the trigger id was known already)
    status: str  # the broadcast's status then: RUNNING, FAILED (no group), or a known one's

    @property
    def started(self) -> bool:
        """Whether this call started a broadcast that runs."""
        return self.created and self.status == RUNNING


class Broadcasts:
    def __init__(
        self,
        state_dir: Path,
        cache: LocalCache,
        pbx: Pbx,
        dialer: Dialer,
        channels: int,
        calls: CallSettings,
    ) -> None:
        self.cache = cache
        self.pbx = pbx
        self.dialer = dialer
        self.calls = calls
        self.audio_dir = state_dir / "audio"
        self.journal = Journal(state_dir / "broadcasts.db")
        self.channels = Channels(channels)
        self.running: dict[str, asyncio.Task[None]] = {}
        self.runs: dict[str, BroadcastRun] = {}  # the executor of each running broadcast
        self._stops: set[str] = set()  # stopped broadcasts (a run made later stops at once)
        self._accepting = asyncio.Lock()  # the same trigger twice at once starts once
        self.last_failure: datetime | None = None  # a run that broke (health report)
        # The last event number the server stored of a broadcast (the reporter asks it);
        # None: not asked (a bed without a server).
        self.last_stored: Callable[[Broadcast], Awaitable[int]] | None = None

    async def resume(self) -> None:
        """Goes on with every broadcast a stop interrupted.

        The agent was down from its last journaled event (or the broadcast's start)
        until now: attempts that begin after the timeout say so.
        """
        for b in await self.journal.unsettled():
            if b.status == RUNNING and b.id not in self.running:
                log.warning("resuming broadcast %s after a restart", b.id)
                last = await self.journal.last_seq(b.id)
                tail = await self.journal.events(b.id, last - 1, 1) if last else []
                since = tail[0].at if tail else b.started_at
                await self._number_above_the_server(b, last)
                self._start(b, outage=Late(AGENT_DOWN, since, _now()))

    async def _number_above_the_server(self, b: Broadcast, last: int) -> None:
        """New events of a resumed broadcast get numbers the server has not stored yet.

        A crash while the journal was behind lost the events only memory held; the server
        may have stored them, and it ignores numbers it has (as repeats). So numbering goes
        on above what the server says it stored; when it cannot say within a few seconds,
        RESUME_GAP numbers above the file's last.
        """
        if self.last_stored is None:
            return
        try:
            async with asyncio.timeout(RESUME_ASK_S):
                stored = await self.last_stored(b)
        except (AgentError, TimeoutError, OSError) as exc:
            log.warning("broadcast %s: the server's last event unknown (%s)", b.id, exc)
            stored = last + RESUME_GAP
        if stored > last:
            log.warning("broadcast %s: events after %d continue above %d", b.id, last, stored)
        await self.journal.number_above(b.id, stored)

    async def accept(self, trigger: Trigger) -> str:
        """Journals a broadcast for the trigger and starts it; returns its id.

        A trigger seen before returns the broadcast it made, running or not.
        """
        return (await self.admit(trigger)).id

    async def admit(self, trigger: Trigger) -> Accepted:
        """As `accept`, and whether this call journaled the broadcast and it runs: the
        IVR says "ausgelöst" only then (a trigger id known already is someone else's)."""
        taken_up = _now()
        known = await self.journal.by_source(trigger.source_id)
        if known is not None:
            return Accepted(known.id, created=False, status=known.status)
        # Prepared outside the lock: a slow recording download or PBX must not hold
        # up another alarm that arrives meanwhile.
        broadcast, plan = await self._prepare(trigger)
        async with self._accepting:
            known = await self.journal.by_source(trigger.source_id)
            if known is not None:
                return Accepted(known.id, created=False, status=known.status)
            try:
                await self.journal.create(broadcast, plan.members if plan else ())
            except sqlite3.IntegrityError:  # a second agent process on the same folder
                raise AgentError(f"trigger {trigger.source_id} is journaled already") from None
        if plan is None:
            await self.journal.finish(broadcast.id, FAILED, _now(), broadcast.note or "")
            status = FAILED
        else:
            self._start(broadcast, list(plan.members), trigger.outage(taken_up))
            status = RUNNING
        log.info("broadcast %s accepted (%s %s)", broadcast.id, trigger.source, trigger.source_id)
        return Accepted(broadcast.id, created=True, status=status)

    async def _prepare(self, trigger: Trigger) -> tuple[Broadcast, GroupPlan | None]:
        now = _now()
        # A clock ahead of ours must not stretch the timeout into the future.
        raised = min(trigger.raised_at, now) if trigger.raised_at is not None else now
        timeout = int(self.cache.data["settings"].get("broadcastTimeoutSeconds", 300))
        groups = self.cache.broadcast_groups
        gid = find_group(groups, trigger.agent_number, trigger.group_id)
        b = Broadcast(
            id=str(uuid.uuid4()),
            source=trigger.source,
            source_id=trigger.source_id,
            group_pbx_id=gid or trigger.group_id or trigger.agent_number or "?",
            mode=int(trigger.mode),
            started_at=raised,
            deadline_at=raised + timedelta(seconds=timeout),
            caller_number=trigger.caller_number,
            caller_name=trigger.caller_name,
        )
        if gid is None:
            target = trigger.agent_number or trigger.group_id
            return replace(b, note=f"no broadcast group for {target!r} on this agent"), None
        directory = self.cache.data["directory"]
        states = trigger.states
        if trigger.mode is Mode.TEST and not states:
            # Planned without states first: the members whose states are asked for.
            members = plan_group(gid, groups[gid], directory, trigger.mode, {}).members
            states = await self._states(members)
        plan = plan_group(gid, groups[gid], directory, trigger.mode, states)
        source, note = await self._announcement(trigger, plan)
        try:
            # A disk that cannot take the play file plays it from the temporary folder
            # or from memory: the customer's message all the same.
            play = await asyncio.to_thread(
                audio.compose_anyway, source, plan.repetitions, self.audio_dir
            )
        except (audio.AudioError, OSError) as exc:  # the announcement itself is unusable
            fallback = audio.DEFAULTS["test" if trigger.mode is Mode.TEST else "alarm"]
            note = f"the announcement cannot be played ({exc}); the standard message was played"
            play = await asyncio.to_thread(
                audio.compose_anyway, fallback, plan.repetitions, self.audio_dir
            )
        return replace(b, announcement=str(play), quorum=plan.quorum, note=note), plan

    async def _states(self, members: Sequence[Member]) -> dict[str, int]:
        """User states for a test broadcast: the PBX port's, and for members it does not
        know, what the dialer's look at their dialogs says (RFC 4235), if it can look.

        A member whose state stays unknown is called, without interrupting anyone (a busy
        answer is recorded as busy).
        """
        states: dict[str, int] = {}
        try:
            directory = await self.pbx.directory()
            # "Not available" is SwyxWare's "state unknown" (the Swyx adapter without
            # COM says so for everyone): the dialer may still find out.
            states = {
                u.id: int(u.state) for u in directory.users if u.state is not UserState.UNAVAILABLE
            }
        except PbxError as exc:
            log.warning("user states unavailable for a test broadcast: %s", exc.message)
        unknown = {m.pbx_id: m.extension for m in members if m.pbx_id not in states and m.extension}
        if not unknown:
            return states
        try:
            found: Mapping[str, bool | None] = await self.dialer.busy_members(unknown)
        except Exception as exc:  # only a help: without it the members are called
            log.warning("dialog states unavailable for a test broadcast: %s", exc)
            return states
        for pbx_id, on_the_phone in found.items():
            if pbx_id in unknown and on_the_phone is not None:
                states[pbx_id] = int(UserState.BUSY if on_the_phone else UserState.LOGGED_ON)
        return states

    async def _announcement(self, trigger: Trigger, plan: GroupPlan) -> tuple[Path, str | None]:
        kind = "test" if trigger.mode is Mode.TEST else "alarm"
        note = None
        if trigger.mode is Mode.ALARM_RECORDED and trigger.recording is not None:
            try:
                recorded = await trigger.recording()
                # Pure Python over up to a minute of audio: off the loop, calls go on.
                data = await asyncio.to_thread(audio.telephony_master, recorded)
                # On a full disk: the temporary folder, else memory (never the stored message).
                path = await asyncio.to_thread(
                    audio.keep, f"recordings/{trigger.source_id}.wav", data, self.audio_dir
                )
                return path, None
            except (AgentError, audio.AudioError, OSError) as exc:
                note = (
                    f"the recorded message is unusable ({exc}); the stored alarm message was played"
                )
                log.error("broadcast %s: %s", trigger.source_id, note)
        stored = plan.announcements.get(kind)
        if stored and (self.cache.audio_dir / stored).is_file():
            return self.cache.audio_dir / stored, note
        return audio.DEFAULTS[kind], note

    def _stop_notice(self) -> Path:
        """ "Der Rundruf wurde beendet" in the tenant's language (the IVR's prompt file)."""
        language = language_of(self.cache.data.get("settings"))
        return PROMPT_DIR / language / ivr_definition.PROMPTS["stopped"]

    async def stop(
        self,
        stop: Stop,
        *,
        broadcast_id: str | None = None,
        group_pbx_id: str | None = None,
        started_before: datetime | None = None,
    ) -> list[str]:
        """Stops the running broadcast `broadcast_id` (the website), or every running one of
        the group (by phone); returns the ids it stopped (none: nothing was running).

        The stop is journaled first, so a restart meanwhile does not call on; it needs
        nothing from the central service (the history learns it with the report).
        """
        stopped: list[str] = []
        for b in await self.journal.unsettled():
            if b.status != RUNNING:
                continue
            if broadcast_id is not None and b.id != broadcast_id:
                continue
            if group_pbx_id is not None and b.group_pbx_id != group_pbx_id:
                continue
            # A stop job taken up again after a restart must not stop a later broadcast.
            if started_before is not None and b.started_at > started_before:
                continue
            if not await self.journal.stopped(b.id, stop):
                continue
            self._stops.add(b.id)
            run = self.runs.get(b.id)
            if run is not None:
                run.stop()
            stopped.append(b.id)
            log.warning("broadcast %s stopped (%s, %s)", b.id, stop.via, stop.by)
        return stopped

    def _start(
        self, b: Broadcast, members: list[Member] | None = None, outage: Late | None = None
    ) -> None:
        task = asyncio.create_task(self._run(b, members, outage), name=f"broadcast-{b.id}")
        self.running[b.id] = task

        def done(_: object) -> None:
            self.running.pop(b.id, None)
            self.runs.pop(b.id, None)
            self._stops.discard(b.id)

        task.add_done_callback(done)

    async def _run(self, b: Broadcast, members: list[Member] | None, outage: Late | None) -> None:
        """Runs the broadcast to its end; after an unexpected error, again from the journal."""
        while True:
            if members is None:  # a new broadcast brings them; a resumed one reads them
                members = await self.journal.members(b.id)
            b = await self._playable(b)
            run = BroadcastRun(
                b,
                members,
                self.journal,
                self.dialer,
                self.channels,
                self.calls,
                outage,
                stop_notice=self._stop_notice(),
            )
            self.runs[b.id] = run
            if b.id in self._stops:  # stopped while it was being set up
                run.stop()
            try:
                await run.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a disk hiccup, say: the journal knows where it stood
                self.last_failure = _now()
                log.exception("broadcast %s stopped unexpectedly; resuming", b.id)
            await asyncio.sleep(RESTART_PAUSE_S)
            b, members = await self.journal.get(b.id), None
            if b.status != RUNNING:
                return

    async def _playable(self, b: Broadcast) -> Broadcast:
        """The broadcast with an announcement that is there: one held in memory (a full
        disk) is gone after a restart, and the standard message stands in, noted."""
        if b.announcement is None or await asyncio.to_thread(audio.readable, Path(b.announcement)):
            return b
        kind = "test" if b.mode == Mode.TEST else "alarm"
        play = await asyncio.to_thread(
            audio.compose_anyway, audio.DEFAULTS[kind], 1, self.audio_dir
        )
        note = "the announcement was lost with a restart; the standard message was played"
        log.error("broadcast %s: %s", b.id, note)
        return replace(b, announcement=str(play), note="; ".join(filter(None, [b.note, note])))

    async def close(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        await self.journal.close()


def _now() -> datetime:
    return datetime.now(UTC)


def trigger_from_job(job: dict[str, Any], fetch: Callable[[str], Awaitable[bytes]]) -> Trigger:
    """A job as the job service serves it (swyx_jobservice/README.md) as a trigger."""
    job_id = str(job["id"])
    mode = Mode(int(job["mode"]))

    async def recording() -> bytes:
        return await fetch(job_id)

    return Trigger(
        source="job",
        source_id=job_id,
        raised_at=aware_time(job.get("receivedAt")),
        mode=mode,
        agent_number=job.get("agentNumber"),
        group_id=job.get("groupId"),
        caller_number=job.get("callerNumber") or None,
        caller_name=job.get("callerName"),
        states=states_from_job(job.get("memberStates")),
        recording=recording if mode is Mode.ALARM_RECORDED and job.get("recording") else None,
    )
