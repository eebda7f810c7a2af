"""The trigger call's dialogue at the agent's own IVR, as rundruf.lua's M.run runs it.

PIN (3 tries, digits until #), the per-caller wait after wrong PINs, the mode menu
(1 test, 2 alarm, 3 alarm with a message recorded now, 0 stop the group's running
broadcast, * cancel; 5 rounds), the
confirmation (1 starts, any other key back to the menu; mode 3: the recording played
back, 1 sends, 2 records again, 3 takes), then the trigger. "Rundruf wird ausgelöst"
is said only after `start` returned, that is after the broadcast was journaled
durably: the same promise the job service's 201 gives the script.

Values come from definition.py; the line is any CallerLine (port.py). A caller who
hangs up ends the dialogue at once, and nothing is triggered unless the last key
(the confirmation) came before.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import sys
from array import array
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from edge_agent.broadcast.model import Mode
from edge_agent.ivr import definition
from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.ivr.prompts import record_tone

log = logging.getLogger(__name__)

KEYS = definition.KEYS
PIN_TRIES = int(definition.setting("pin_tries"))
PIN_MAX_DIGITS = int(definition.setting("pin_max_digits"))
DIGIT_TIMEOUT_S = float(definition.setting("digit_timeout"))
MENU_ROUNDS = int(definition.setting("menu_rounds"))
RECORD_MAX_S = float(definition.setting("record_max_seconds"))
RECORD_SILENCE_S = float(definition.setting("record_silence_seconds"))
RECORD_NO_SPEECH_S = float(definition.setting("record_no_speech_seconds"))
RECORD_TAKES = int(definition.setting("record_takes"))
# A recording shorter than this, or without a sample this loud (-40 dBFS: no 20 ms
# frame of it was speech to the SIP line's recorder, sip/recording.py), has no message
# in it: "Die Aufnahme ist fehlgeschlagen", and the caller records again.
MIN_RECORDING_S = 0.5
# Under attack the turn is asked for again this often once the first estimate is over.
TURN_POLL_S = 1.0
SPEECH_PEAK = 328
BYTES_PER_SECOND = definition.SAMPLE_RATE * definition.SAMPLE_WIDTH
# Silence kept before the first sound of a message: members heard the 1-2 s the caller
# took to start speaking after the tone; this little still sounds natural.
LEAD_IN_S = 0.2

# Starts that outlive their call (the caller hung up, the call's task was cancelled):
# an alarm the caller confirmed is journaled all the same.
_starting: set[asyncio.Task[object]] = set()


class Outcome(enum.StrEnum):
    TRIGGERED = "triggered"  # the broadcast is journaled and runs
    TRIGGER_FAILED = "trigger_failed"  # confirmed, but it could not be journaled
    WRONG_PIN = "wrong_pin"  # 3 tries without the right PIN
    CANCELLED = "cancelled"  # * in the menu
    MENU_EXHAUSTED = "menu_exhausted"  # 5 menu rounds without a choice
    HANGUP = "hangup"  # the caller hung up before confirming
    STOPPED = "stopped"  # 0 in the menu stopped the group's running broadcast (issue 17)
    NOTHING_TO_STOP = "nothing_to_stop"  # 0 in the menu, but none was running


@dataclass(frozen=True)
class Choice:
    mode: Mode
    recording: bytes | None = None  # mode 3: the caller's message, PCM as the line gives it


class Throttle(Protocol):
    """guard.PinGuard: the per-caller wait and the group's wrong-PIN count. `wait` claims
    the next try; `right`, `wrong` or `unused` settles it."""

    async def wait(self, agent_number: str, caller: str) -> float: ...

    async def left(self, agent_number: str, caller: str) -> float: ...

    async def right(self, agent_number: str, caller: str) -> None: ...

    async def wrong(self, agent_number: str, caller: str) -> bool: ...

    async def unused(self, agent_number: str, caller: str) -> None: ...


Start = Callable[[Choice], Awaitable[object]]  # journals and starts; raises if it cannot
# Stops the group's running broadcast (journaled first); how many it stopped.
Stop = Callable[[], Awaitable[int]]
Prompt = Callable[[str], bytes]  # prompt name (definition.PROMPTS) -> PCM


def has_message(pcm: bytes) -> bool:
    """Whether a recording is long enough and has sound in it."""
    if len(pcm) < MIN_RECORDING_S * BYTES_PER_SECOND:
        return False
    samples = array("h", pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return max(samples) >= SPEECH_PEAK or min(samples) <= -SPEECH_PEAK


def trim_lead_in(pcm: bytes) -> bytes:
    """The recording from LEAD_IN_S before its first sample as loud as speech."""
    samples = array("h", pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    first = next((n for n, s in enumerate(samples) if abs(s) >= SPEECH_PEAK), 0)
    start = max(0, first - int(LEAD_IN_S * definition.SAMPLE_RATE))
    return pcm[start * definition.SAMPLE_WIDTH :]


class TriggerCall:
    """One answered trigger call to `agent_number`, whose PIN is `pin`."""

    def __init__(
        self,
        line: CallerLine,
        *,
        agent_number: str,
        pin: str,
        prompt: Prompt,
        throttle: Throttle,
        start: Start,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        stop: Stop | None = None,
    ) -> None:
        self.line = line
        self.agent_number = agent_number
        self.pin = pin
        self.prompt = prompt
        self.throttle = throttle
        self.start = start
        self.stop = stop  # None: the menu's 0 is no choice here
        # The throttle's wait; by default on the line, so that a hang-up ends it at once.
        self.sleep = sleep or self.listen
        self.caller = line.caller_number or ""

    async def run(self) -> Outcome:
        """The whole call, hung up at the end; how it ended."""
        outcome = Outcome.HANGUP
        try:
            outcome = await self._dialogue()
        except CallerGone:
            log.info("trigger call %s: the caller hung up", self.line.call_id)
        except Exception:  # a bug must not leave the caller in silence
            log.exception("trigger call %s failed unexpectedly", self.line.call_id)
            outcome = Outcome.TRIGGER_FAILED
            with suppress(Exception):
                await self.say("failed")
        finally:
            try:
                await self.line.hang_up()
            except Exception:
                log.exception("trigger call %s: hanging up failed", self.line.call_id)
        log.info(
            "trigger call %s to %s from %r: %s",
            self.line.call_id,
            self.agent_number,
            self.caller,
            outcome.value,
        )
        return outcome

    async def _dialogue(self) -> Outcome:
        if not await self._pin():
            return Outcome.WRONG_PIN
        choice = await self._choose()
        if isinstance(choice, Outcome):
            return choice
        return await self._trigger(choice)

    # -- what the caller hears and presses -----------------------------------------

    async def say(self, name: str) -> None:
        """A prompt that asks nothing: keys pressed meanwhile are not an answer."""
        await self.line.play(self.prompt(name), barge_in=False)

    async def ask(self, name: str, max_digits: int, end: str | None) -> str:
        """A question: old keys forgotten, the prompt (a key stops it), the answer."""
        self.line.clear_digits()
        await self.line.play(self.prompt(name), barge_in=True)
        return await self.line.read_digits(max_digits, DIGIT_TIMEOUT_S, end)

    async def listen(self, seconds: float) -> None:
        """Waits `seconds` on the line: keys pressed meanwhile are no answer and neither
        shorten nor lengthen it, a hang-up raises CallerGone at once, not after the wait."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            # One key at a time, each read bounded by what is left: read_digits counts its
            # time from the last key, so a read of many keys would go on past the end.
            await self.line.read_digits(1, left, None)

    # -- PIN -------------------------------------------------------------------------

    async def _pin(self) -> bool:
        for _ in range(PIN_TRIES):
            settled = False
            try:
                await self._wait_for_turn()
                entry = await self.ask("pin", PIN_MAX_DIGITS, KEYS["pin_end"])
                if entry and hmac.compare_digest(entry.encode(), self.pin.encode()):
                    await self.throttle.right(self.agent_number, self.caller)
                    settled = True
                    self.line.authenticated()
                    return True
                if entry == "":  # uses a try, is no wrong PIN
                    await self.throttle.unused(self.agent_number, self.caller)
                    settled = True
                    await self.say("invalid")
                else:
                    await self.throttle.wrong(self.agent_number, self.caller)
                    settled = True
                    await self.say("pin_wrong")
            finally:
                if not settled:  # the call ended before its try: the claim is freed
                    with suppress(Exception):
                        await self.throttle.unused(self.agent_number, self.caller)
        await self.say("goodbye")
        return False

    async def _wait_for_turn(self) -> None:
        """Claims the next try (the throttle counts it until it is settled) and waits."""
        wait = await self.throttle.wait(self.agent_number, self.caller)
        if wait <= 0:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        # The IVR's own wait does not count against the line's PIN stage limit.
        self.line.pin_stage_extend(wait)
        await self.say("wait")
        rest = end - loop.time()  # the prompt took some of the wait already
        if rest > 0:  # at most a gap per call waiting ahead at the claim
            await self.sleep(rest)
        # Under attack the queue hands tries out one by one, to the calls still waiting:
        # asked again until the try is ours.
        while (rest := await self.throttle.left(self.agent_number, self.caller)) > 0:
            pause = min(rest, TURN_POLL_S)
            self.line.pin_stage_extend(pause)
            await self.sleep(pause)

    # -- menu ------------------------------------------------------------------------

    async def _choose(self) -> Choice | Outcome:
        for _ in range(MENU_ROUNDS):
            key = await self.ask("menu", 1, None)
            if key == KEYS["cancel"]:
                await self.say("cancelled")
                return Outcome.CANCELLED
            if key == KEYS["stop"] and self.stop is not None:
                return await self._stop(self.stop)
            if key == KEYS["alarm_recorded"]:
                recording = await self._record()
                if recording is not None:
                    return Choice(Mode.ALARM_RECORDED, recording)
            elif key in (KEYS["test"], KEYS["alarm"]):
                mode = Mode.TEST if key == KEYS["test"] else Mode.ALARM
                confirm = "confirm_test" if mode is Mode.TEST else "confirm_alarm"
                if await self.ask(confirm, 1, None) == KEYS["confirm"]:
                    return Choice(mode)
            else:
                await self.say("invalid")
        await self.say("goodbye")
        return Outcome.MENU_EXHAUSTED

    async def _record(self) -> bytes | None:
        """Mode 3: the message to send, or None for back to the menu."""
        for _ in range(RECORD_TAKES):
            await self.say("record")
            await self.line.play(record_tone(), barge_in=False)
            self.line.clear_digits()  # a # pressed during the prompt must not end it
            pcm = await self.line.record(
                RECORD_MAX_S, RECORD_SILENCE_S, KEYS["record_end"], RECORD_NO_SPEECH_S
            )
            if not await asyncio.to_thread(has_message, pcm):
                await self.say("record_failed")
                continue
            pcm = await asyncio.to_thread(trim_lead_in, pcm)
            self.line.clear_digits()
            await self.line.play(pcm, barge_in=True)  # the playback: 1 may come right away
            key = await self.line.read_digits(1, 0.0, None)  # a key pressed during it
            if not key:  # none: the caller is asked
                await self.line.play(self.prompt("record_check"), barge_in=True)
                key = await self.line.read_digits(1, DIGIT_TIMEOUT_S, None)
            if key == KEYS["record_send"]:
                return pcm
            if key != KEYS["record_again"]:
                return None
        return None

    # -- the stop (issue 17) -----------------------------------------------------------

    async def _stop(self, stop: Stop) -> Outcome:
        """The menu's 0: the group's running broadcast stops, whether the caller stays on
        the line or not; "Der Rundruf wurde beendet" once it is journaled."""
        task: asyncio.Task[object] = asyncio.create_task(
            _started(stop()), name=f"ivr-stop-{self.line.call_id}"
        )
        _starting.add(task)
        task.add_done_callback(_finished)
        try:
            stopped = await asyncio.shield(task)
        except Exception:
            with suppress(CallerGone):
                await self.say("failed")
            return Outcome.TRIGGER_FAILED
        with suppress(CallerGone):
            await self.say("stopped" if stopped else "stop_none")
        return Outcome.STOPPED if stopped else Outcome.NOTHING_TO_STOP

    # -- the trigger -----------------------------------------------------------------

    async def _trigger(self, choice: Choice) -> Outcome:
        task: asyncio.Task[object] = asyncio.create_task(
            _started(self.start(choice)), name=f"ivr-start-{self.line.call_id}"
        )
        _starting.add(task)
        task.add_done_callback(_finished)
        try:
            await asyncio.shield(task)  # a cancelled call does not cancel the start
        except Exception:  # logged by _finished, also when nobody waits any more
            with suppress(CallerGone):
                await self.say("failed")
            return Outcome.TRIGGER_FAILED
        with suppress(CallerGone):  # the broadcast runs all the same
            await self.say("triggered")
        return Outcome.TRIGGERED


async def _started(start: Awaitable[object]) -> object:
    return await start


def _finished(task: asyncio.Task[object]) -> None:
    """A start's end: a failure is logged here, whether its call still waits or not."""
    _starting.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s: the broadcast could not start", task.get_name(), exc_info=exc)
