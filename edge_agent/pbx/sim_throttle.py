"""The wrong-PIN throttle of the simulated trigger call, as rundruf.lua keeps it.

Per caller number: after the n-th wrong PIN the next try waits until
``delays[n]`` seconds have passed since it (capped at the last entry); an hour
without a wrong PIN, or a correct PIN, clears the count. Per agent number: 10
wrong PINs from anyone within 10 minutes make one notice, at most one per
window. Nobody is ever locked out. `AgentThrottle` holds the rules (pure);
`ThrottleFile` keeps it next to the simulator's state file, so the count lasts
across calls and processes, as the script's state folder does on the PBX.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from edge_agent import filelock
from edge_agent.files import write_atomic
from edge_agent.ivr.definition import DEFAULTS, setting

log = logging.getLogger(__name__)

FORMAT = 1
KEEP_TIMES = 100  # the script keeps the last 100 wrong-PIN times per group
# Callers remembered per agent number, the most recent: numbers rotated within the hour
# must not grow the file (and each look at it) without end; one forgotten here has had
# one wrong PIN or a few, and the group's count goes on.
KEEP_CALLERS = 1000

T = TypeVar("T")


def _delays() -> tuple[float, ...]:
    delays = DEFAULTS["throttle_delays"]
    if not isinstance(delays, tuple):
        raise TypeError("throttle_delays must be a tuple")
    return tuple(float(d) for d in delays)


@dataclass(frozen=True)
class ThrottleRules:
    """The dialogue's defaults (edge_agent/ivr/definition.py, as rundruf.lua's M.DEFAULTS);
    times in seconds of whatever clock is used with them."""

    delays: tuple[float, ...] = _delays()
    forget_s: float = setting("throttle_forget")
    notice_threshold: int = int(setting("notice_threshold"))
    notice_window_s: float = setting("notice_window")

    def scaled(self, factor: float) -> ThrottleRules:
        """The same rules with every duration times `factor` (the simulator's time scale)."""
        return replace(
            self,
            delays=tuple(d * factor for d in self.delays),
            forget_s=self.forget_s * factor,
            notice_window_s=self.notice_window_s * factor,
        )


@dataclass(frozen=True)
class NoticeClaim:
    """A notice that is due: sent by the claimer, released again if sending fails."""

    count: int
    claimed_at: float
    previous: float | None


def caller_key(caller_number: str) -> str:
    # Callers without a number share one counter, as in the script.
    return caller_number or "anonymous"


@dataclass
class AgentThrottle:
    """The throttle state of one agent number; times are the clock's seconds."""

    callers: dict[str, tuple[int, float]] = field(default_factory=dict)  # count, last wrong
    wrong_pins: list[float] = field(default_factory=list)
    notice_at: float | None = None

    def wait(self, caller: str, now: float, rules: ThrottleRules) -> float:
        """How long `caller` still has to wait before the next PIN try is taken."""
        count, last = self._count(caller, now, rules)
        if count == 0:
            return 0.0
        delay = rules.delays[min(count, len(rules.delays) - 1)]
        return max(0.0, last + delay - now)

    def count(self, caller: str, now: float, rules: ThrottleRules) -> int:
        """`caller`'s wrong PINs that still count."""
        return self._count(caller, now, rules)[0]

    def record_wrong(self, caller: str, now: float, rules: ThrottleRules) -> NoticeClaim | None:
        """Counts a wrong PIN; a claim when it makes a notice due (claimed here,
        so that two calls at once do not both send it)."""
        count, _ = self._count(caller, now, rules)
        # Callers whose count is forgotten go: numbers that change with every call must
        # not grow the file without end.
        kept = [(k, v) for k, v in self.callers.items() if now - v[1] <= rules.forget_s]
        kept.sort(key=lambda item: item[1][1])
        self.callers = dict(kept[-(KEEP_CALLERS - 1) :])
        self.callers[caller_key(caller)] = (count + 1, now)
        recent = [t for t in self.wrong_pins if now - t < rules.notice_window_s]
        self.wrong_pins = [*recent, now][-KEEP_TIMES:]
        if len(recent) + 1 < rules.notice_threshold:
            return None
        if self.notice_at is not None and now - self.notice_at < rules.notice_window_s:
            return None
        claim = NoticeClaim(len(recent) + 1, now, self.notice_at)
        self.notice_at = now
        return claim

    def release(self, claim: NoticeClaim) -> None:
        """Undoes a claim whose notice could not be sent: the next wrong PIN tries again."""
        if self.notice_at == claim.claimed_at:
            self.notice_at = claim.previous

    def clear(self, caller: str) -> None:
        self.callers.pop(caller_key(caller), None)

    def _count(self, caller: str, now: float, rules: ThrottleRules) -> tuple[int, float]:
        count, last = self.callers.get(caller_key(caller), (0, 0.0))
        if count and now - last > rules.forget_s:
            return 0, 0.0
        return count, last

    @property
    def empty(self) -> bool:
        return not self.callers and not self.wrong_pins and self.notice_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "callers": {k: [count, last] for k, (count, last) in self.callers.items()},
            "wrongPins": self.wrong_pins,
            "noticeAt": self.notice_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentThrottle:
        """Raises KeyError, TypeError or ValueError when `data` is no throttle state."""
        notice_at = data["noticeAt"]
        return cls(
            callers={str(k): (int(v[0]), float(v[1])) for k, v in data["callers"].items()},
            wrong_pins=[float(t) for t in data["wrongPins"]],
            notice_at=None if notice_at is None else float(notice_at),
        )


def throttle_path(state_path: Path) -> Path:
    """Where the trigger calls' throttle for the simulator state at `state_path` lives."""
    return state_path.with_name(state_path.name + ".trigger.json")


class ThrottleFile:
    """The throttle of every agent number in one JSON file; safe across processes.

    Each change is a locked read-modify-write that replaces the file whole, as
    `SimDialerControl` does; a look that changes nothing (a wait) writes nothing. A
    damaged file is logged and started afresh: the throttle is best effort in the
    script too, and must never stop an alarm.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = throttle_path(state_path)

    def update(self, agent_number: str, change: Callable[[AgentThrottle], T]) -> T:
        with filelock.exclusive(self.path.with_name(self.path.name + ".lock")):
            raw, agents = self._read()
            throttle = agents.setdefault(agent_number, AgentThrottle())
            result = change(throttle)
            encoded = _encode(agents)
            if encoded != raw:
                write_atomic(self.path, encoded)
            return result

    def _read(self) -> tuple[bytes, dict[str, AgentThrottle]]:
        """The file as it is, and what it says."""
        raw = b""
        try:
            raw = self.path.read_bytes()
            data = json.loads(raw.decode("utf-8"))
            if data["format"] != FORMAT:
                raise ValueError(f"unknown format {data['format']!r}")
            return raw, {str(k): AgentThrottle.from_json(v) for k, v in data["agents"].items()}
        except FileNotFoundError:
            return raw, {}
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            log.warning("the throttle file %s is damaged, starting afresh: %r", self.path, exc)
            return raw, {}


def _encode(agents: dict[str, AgentThrottle]) -> bytes:
    """The file's bytes; agent numbers with nothing to remember are left out."""
    kept = {k: v.to_json() for k, v in agents.items() if not v.empty}
    data = {"format": FORMAT, "agents": kept}
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
