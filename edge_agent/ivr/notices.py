"""Wrong-PIN notices of the agent's own IVR, kept on disk until the central service has them.

One small JSON file per notice in `<state_dir>/ivr/notices/` (written whole or not at
all, files.py), deleted once `reportNotice` returned: a notice made while the central
service is away (or the agent restarts) goes out later. The server keys notices by
`noticeId`, so sending one again after a lost answer stores nothing twice. The same
notice as the job service's (intake.py forwards those), so the tenant gets the same mail.
A notice the server refuses (an older server, say) is tried again later and later (5 s
doubling up to an hour; the count is kept in memory, a restart tries once more at once),
and dropped, logged, once it is two days old: a mail that late tells nobody anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from edge_agent.errors import AgentError, ServerRefused, ServerUnreachable
from edge_agent.files import write_json

log = logging.getLogger(__name__)

WRONG_PINS = "wrongPins"
RETRY_S = 5.0  # notices are mails to people: a few seconds late is fine
REFUSED_MAX_S = 3600.0  # the longest pause between tries of a refused notice
DROP_AFTER_S = 2 * 24 * 3600.0  # a refused notice this old is dropped
SUFFIX = ".json"


class NoticeSink(Protocol):
    async def report_notice(self, notice: dict[str, Any]) -> bool: ...


def wrong_pins(agent_number: str, caller_number: str, count: int, at: datetime) -> dict[str, Any]:
    """The notice as `reportNotice` takes it."""
    return {
        "noticeId": f"ivr-{uuid.uuid4().hex}",
        "kind": WRONG_PINS,
        "agentNumber": agent_number,
        "callerNumber": caller_number,
        "count": count,
        "at": at.isoformat(),
    }


class NoticeOutbox:
    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = state_dir / "ivr" / "notices"
        self.added = asyncio.Event()  # a new notice: send now, not at the next round
        self.clock = clock
        # Refused notices: how often, and when the next try is due (clock time).
        self.refused: dict[Path, tuple[int, float]] = {}

    def add(self, notice: dict[str, Any]) -> None:
        """Keeps `notice` durably (raises OSError when it cannot); blocking file I/O."""
        write_json(self.folder / f"{notice['noticeId']}{SUFFIX}", notice)

    def pending(self) -> list[tuple[Path, dict[str, Any]]]:
        """The notices not sent yet, oldest first; a damaged file is logged and skipped."""
        try:
            files = sorted(self.folder.glob(f"*{SUFFIX}"), key=_mtime)
        except OSError:
            return []
        found: list[tuple[Path, dict[str, Any]]] = []
        for path in files:
            try:
                notice = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.error("notice file %s cannot be read: %r", path, exc)
                continue
            if isinstance(notice, dict):
                found.append((path, notice))
        return found

    async def send(self, sink: NoticeSink) -> int:
        """Sends what is pending; the number sent. Stops at an unreachable server."""
        sent = 0
        for path, notice in await asyncio.to_thread(self.pending):
            now = self.clock()
            refusals, due = self.refused.get(path, (0, now))
            if due > now:
                continue
            try:
                await sink.report_notice(notice)
            except ServerUnreachable as exc:
                log.info("wrong-PIN notices not sent yet: %s", exc)
                return sent
            except (ServerRefused, AgentError) as exc:
                # Kept: a server that refuses today (an older one, say) may take it later.
                await self._refused(path, notice, refusals + 1, now, exc)
                continue
            self.refused.pop(path, None)
            with suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
            sent += 1
        return sent

    async def _refused(
        self, path: Path, notice: dict[str, Any], refusals: int, now: float, exc: Exception
    ) -> None:
        made = await asyncio.to_thread(_mtime, path)
        if now - made >= DROP_AFTER_S:
            log.error(
                "notice %s dropped: refused %d times over %.0f h (%s)",
                notice.get("noticeId"),
                refusals,
                (now - made) / 3600,
                exc,
            )
            self.refused.pop(path, None)
            with suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
            return
        pause = min(REFUSED_MAX_S, RETRY_S * 2.0 ** (refusals - 1))
        self.refused[path] = (refusals, now + pause)
        log.warning(
            "the server refused notice %s (%d times, next try in %.0f s): %s",
            notice.get("noticeId"),
            refusals,
            pause,
            exc,
        )

    async def send_forever(self, sink: NoticeSink) -> None:
        while True:
            self.added.clear()
            try:
                await self.send(sink)
            except Exception:  # the loop must outlive any one bad notice or disk error
                log.exception("sending wrong-PIN notices failed unexpectedly")
            with suppress(TimeoutError):
                async with asyncio.timeout(RETRY_S):
                    await self.added.wait()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
