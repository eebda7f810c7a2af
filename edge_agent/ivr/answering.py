"""Which incoming call the agent answers, and what an answered trigger call starts.

The SIP user agent asks `route(called number)` for each new INVITE: a broadcast
group whose agent number it is (and whose PIN has at least 4 digits) gets the
dialogue of flow.py with that PIN; a number no group has is refused with 404, and
any call while the agent has no broadcast groups cached at all with 480 (the agent
cannot tell yet which numbers are its own). A confirmed call starts its broadcast
in this agent directly (Broadcasts.accept, which journals it durably first), with
the source "sip" and an id made from the SIP Call-ID, the From tag and the agent
number: the same call never triggers twice, also if its INVITE comes again after a
restart, and a new call that reuses a Call-ID (a PBX restarted, a tool's default
ids) gets its own broadcast. The caller hears "ausgelöst" only when this call
journaled the broadcast and it runs: a trigger id known already, or a broadcast
that failed at once (its group left the cache during the call), is "fehlgeschlagen".
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import logging
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.broadcast.manager import Broadcasts, Trigger
from edge_agent.broadcast.model import Mode, Stop
from edge_agent.cache import LocalCache
from edge_agent.errors import AgentError
from edge_agent.files import write_atomic
from edge_agent.ivr import definition
from edge_agent.ivr.flow import Choice, Outcome, TriggerCall
from edge_agent.ivr.guard import PinGuard
from edge_agent.ivr.notices import NoticeOutbox, NoticeSink
from edge_agent.ivr.port import CallerLine
from edge_agent.ivr.prompts import PromptBook, language_of

log = logging.getLogger(__name__)

SOURCE = "sip"
MIN_PIN_DIGITS = 4
# Recordings of calls whose start never came back (a crash in between) are removed
# when the agent starts after this long.
RECORDING_KEEP_S = 24 * 3600

Handler = Callable[[CallerLine], Awaitable[Outcome]]


@dataclass(frozen=True)
class Refusal:
    """The final answer to an INVITE the agent does not take."""

    status: int
    reason: str


NOT_CONFIGURED = Refusal(480, "Temporarily Unavailable")  # no broadcast groups cached yet
UNKNOWN_NUMBER = Refusal(404, "Not Found")


def source_id(call_id: str, from_tag: str, agent_number: str) -> str:
    """The trigger's id for a SIP call: stable per dialog from the caller's side (Call-ID
    and From tag, which a repeated INVITE keeps) and agent number; safe as a file name."""
    # NUL cannot be in a SIP header: the parts cannot run into each other.
    key = "\0".join((call_id, from_tag, agent_number)).encode("utf-8", "replace")
    return f"{SOURCE}-{hashlib.sha256(key).hexdigest()[:40]}"


class NotStarted(AgentError):
    """The confirmed trigger started no broadcast of this call's: the caller hears "failed"."""


def usable_pin(pin: object) -> str | None:
    if isinstance(pin, str) and pin.isascii() and pin.isdigit() and len(pin) >= MIN_PIN_DIGITS:
        return pin
    return None


def wav_of(pcm: bytes) -> bytes:
    """The caller's message (8 kHz 16-bit mono PCM) as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(definition.CHANNELS)
        w.setsampwidth(definition.SAMPLE_WIDTH)
        w.setframerate(definition.SAMPLE_RATE)
        w.writeframes(pcm)
    return out.getvalue()


class IvrAnswering:
    """The router the SIP user agent asks, and the trigger calls it answers."""

    def __init__(
        self,
        state_dir: Path,
        cache: LocalCache,
        broadcasts: Broadcasts,
        *,
        prompts: PromptBook | None = None,
        outbox: NoticeOutbox | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] | None = None,  # None: on the line
    ) -> None:
        self.cache = cache
        self.broadcasts = broadcasts
        self.prompts = prompts or PromptBook()
        self.outbox = outbox or NoticeOutbox(state_dir)
        self.guard = PinGuard(state_dir, self.outbox, clock=clock)
        self.recordings = state_dir / "ivr" / "recordings"
        self.sleep = sleep
        self.calls: set[asyncio.Task[Outcome]] = set()  # answered calls under way

    # -- the router --------------------------------------------------------------------

    def route(self, called: str | Sequence[str]) -> Refusal | Handler:
        """What the call to `called` gets: a refusal, or the handler to answer it with.

        Several numbers (the SIP side's candidates from History-Info, Diversion,
        Request-URI, To, most original first): the first a group has decides."""
        groups = self.cache.broadcast_groups
        if not groups:
            return NOT_CONFIGURED
        for number in [called] if isinstance(called, str) else called:
            number = number.strip()
            for group_id, group in groups.items():
                pin = usable_pin(group.get("pin"))
                if number and group.get("extension") == number and pin is not None:
                    return functools.partial(self.answer, group_id=group_id, number=number, pin=pin)
        return UNKNOWN_NUMBER

    async def answer(self, line: CallerLine, *, group_id: str, number: str, pin: str) -> Outcome:
        """The trigger call to `number` (group `group_id`), from its greeting to hanging up."""
        language = language_of(self.cache.data.get("settings"))
        call = TriggerCall(
            line,
            agent_number=number,
            pin=pin,
            prompt=functools.partial(self.prompts.pcm, language=language),
            throttle=self.guard,
            start=functools.partial(self.start, line, group_id, number),
            stop=functools.partial(self.stop, line, group_id),
            sleep=self.sleep,
        )
        task = asyncio.current_task()
        if task is not None:
            self.calls.add(task)
        try:
            return await call.run()
        finally:
            if task is not None:
                self.calls.discard(task)

    # -- from the call to the broadcast ------------------------------------------------

    async def stop(self, line: CallerLine, group_id: str) -> int:
        """The menu's 0 (issue 17): stops the group's running broadcasts, here in the agent
        (the central service need not answer); how many it stopped."""
        caller = line.caller_number or None
        stop = Stop(by=caller, via="sip", at=datetime.now(UTC))
        stopped = await self.broadcasts.stop(stop, group_pbx_id=group_id)
        log.info("trigger call %s stopped %s", line.call_id, stopped or "nothing")
        return len(stopped)

    async def start(self, line: CallerLine, group_id: str, number: str, choice: Choice) -> str:
        """Journals and starts the broadcast the caller confirmed; its id. Raises when it
        cannot be journaled (the caller then hears that it failed)."""
        trigger_id = source_id(line.call_id, line.from_tag, number)
        kept: Path | None = None
        fetch = None
        if choice.mode is Mode.ALARM_RECORDED and choice.recording is not None:
            data = wav_of(choice.recording)
            kept = await self._keep(trigger_id, data)
            fetch = functools.partial(self._fetch, kept, data)
        trigger = Trigger(
            source=SOURCE,
            source_id=trigger_id,
            mode=choice.mode,
            agent_number=number,
            group_id=group_id,
            caller_number=line.caller_number or None,
            caller_name=line.caller_name or None,
            raised_at=datetime.now(UTC),
            recording=fetch,
        )
        accepted = await self.broadcasts.admit(trigger)
        if kept is not None:  # the broadcast keeps its own copy (audio.keep)
            with suppress(OSError):
                await asyncio.to_thread(kept.unlink, missing_ok=True)
        if not accepted.created:
            raise NotStarted(f"trigger {trigger_id} is broadcast {accepted.id} already")
        if not accepted.started:
            raise NotStarted(f"broadcast {accepted.id} did not start ({accepted.status})")
        log.info("trigger call %s started broadcast %s", line.call_id, accepted.id)
        return accepted.id

    async def _keep(self, trigger_id: str, data: bytes) -> Path | None:
        """The recording on disk before the trigger (a crash meanwhile leaves it there);
        None when the disk will not take it: memory then carries it to the broadcast."""
        path = self.recordings / f"{trigger_id}.wav"
        try:
            await asyncio.to_thread(write_atomic, path, data)
        except OSError as exc:
            log.error("the recording cannot be kept on disk (%s): sending it from memory", exc)
            return None
        return path

    @staticmethod
    async def _fetch(path: Path | None, data: bytes) -> bytes:
        if path is None:
            return data
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError:
            return data

    # -- the agent's life --------------------------------------------------------------

    async def prepare(self) -> None:
        """Reads the prompts of both languages and removes recordings left by a crash."""
        for language in definition.LANGUAGES:
            await asyncio.to_thread(self.prompts.preload, language)
        await asyncio.to_thread(self._prune_recordings)

    def _prune_recordings(self) -> None:
        cutoff = time.time() - RECORDING_KEEP_S
        try:
            old = [p for p in self.recordings.glob("*.wav") if p.stat().st_mtime < cutoff]
        except OSError:
            return
        for path in old:
            with suppress(OSError):
                path.unlink()

    async def send_notices_forever(self, sink: NoticeSink) -> None:
        await self.outbox.send_forever(sink)

    async def close(self) -> None:
        """Ends the calls under way (each hangs up); broadcasts they started run on."""
        for task in list(self.calls):
            task.cancel()
        await asyncio.gather(*self.calls, return_exceptions=True)
