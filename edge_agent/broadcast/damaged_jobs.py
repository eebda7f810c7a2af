"""Job files the job service quarantined (accepted alarms it could not read), reported
to the central service as ``jobFileDamaged`` notices: a mail to the tenant and support
and a failed trigger in the history.

Each entry on its own: one the server refuses, or one the job service cannot mark,
waits with its own growing pause and never holds up the others. What is sent is
made acceptable first (a time out of range, an over-long name): a damaged file is
damaged, and its report must still get through. Reporting that keeps failing makes
the job service unhealthy in the agent's health report, said once at WARNING.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.errors import AgentError, ServerUnreachable
from edge_agent.jobservice import QUARANTINE_PAGE, JobServiceClient, JobServiceUnavailable

log = logging.getLogger(__name__)

KIND = "jobFileDamaged"
# The central service's bounds for a text and a reported time (api/domain/validation).
TEXT_MAX = 64
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
AHEAD_MAX = timedelta(days=1)
# Pages of the job service's listing per round: 250 entries at most every 5 s.
PAGES_PER_ROUND = 5
RETRY_BASE_S = 5.0
RETRY_CAP_S = 300.0
# An entry not reported within this is a problem someone has to look at.
PROBLEM_AFTER_S = 600.0
PROBLEM = "quarantineNotReported"
_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Whether the agent's journal knows a broadcast for this job id (it ran after all).
Ran = Callable[[str], Awaitable[bool]]


def bounded(text: str, limit: int = TEXT_MAX) -> str:
    """One printable line of at most `limit` characters."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def notice_id(name: str) -> str:
    """The notice's key: the name, or when that cannot be one (too long, not printable),
    a hash of it, the same at every try."""
    if 0 < len(name) <= TEXT_MAX and name.isprintable():
        return name
    return "sha256-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:48]


def _time(value: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


def trigger_time(entry: dict[str, Any], now: datetime) -> tuple[datetime, bool]:
    """When the alarm was triggered, and whether that is known: a time outside
    [2000, now + 1 day] (a zero or bit-flipped modification time) becomes when the file
    was found, else now; the server refuses such times."""
    for key in ("triggeredAt", "quarantinedAt"):
        at = _time(entry.get(key))
        if at is not None and EARLIEST <= at <= now + AHEAD_MAX:
            return at, key == "triggeredAt"
    return now, False


def damaged_notice(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The reportNotice input for one listed entry (pure)."""
    name = str(entry["name"])
    file = entry.get("file")
    # Where the operator finds it: a file that could not be moved lies in jobs/.
    stuck = isinstance(file, str) and file.startswith("jobs/")
    at, _ = trigger_time(entry, now)
    mode = entry.get("mode")

    def number(key: str) -> str | None:
        value = entry.get(key)
        return bounded(value) if isinstance(value, str) and value.strip() else None

    return {
        "noticeId": notice_id(name),
        "kind": KIND,
        "agentNumber": number("agentNumber"),
        "callerNumber": number("callerNumber"),
        "count": 1,
        "at": at.isoformat(),
        "fileName": bounded(file if stuck and isinstance(file, str) else name),
        "mode": mode if mode in (1, 2, 3) else None,
    }


@dataclass
class _Retry:
    failures: int
    next_at: float  # monotonic
    since: float  # monotonic, first failure


class DamagedJobReporter:
    def __init__(
        self,
        jobservice: JobServiceClient,
        report: Callable[[dict[str, Any]], Awaitable[bool]],
        ran: Ran | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobservice = jobservice
        self.report = report
        self.ran = ran
        self.clock = clock
        self._retry: dict[str, _Retry] = {}

    async def report_round(self) -> None:
        """Reports what the job service lists, a few pages; never raises for one entry."""
        after, seen, complete = "", set(), False
        for _ in range(PAGES_PER_ROUND):
            try:
                entries = await self.jobservice.quarantined(after)
            except AgentError as exc:
                log.info("quarantined job files not listed now: %s", exc)
                return
            for entry in entries:
                seen.add(str(entry["name"]))
                await self._one(entry)
            if len(entries) < QUARANTINE_PAGE:
                complete = True
                break
            after = str(entries[-1]["name"])
        if complete:
            # Entries gone from the job service (reported, removed) need no retry.
            for name in self._retry.keys() - seen:
                del self._retry[name]
        self._judge()

    async def _one(self, entry: dict[str, Any]) -> None:
        name = str(entry["name"])
        retry = self._retry.get(name)
        if retry is not None and self.clock() < retry.next_at:
            return
        try:
            job_id = _JOB_ID.search(name)
            if job_id and self.ran is not None and await self.ran(job_id.group(0)):
                # The journal has its broadcast: it ran before the file was damaged
                # (the job service stopped before the agent deleted it). No lost alarm.
                log.warning("job file %s was damaged, but its alarm had run: not reported", name)
            else:
                notice = damaged_notice(entry, datetime.now(UTC))
                if not trigger_time(entry, datetime.now(UTC))[1]:
                    log.warning(
                        "job file %s: no usable trigger time, sent as %s", name, notice["at"]
                    )
                await self.report(notice)
                log.error("job file %s was damaged, its alarm never ran: reported", name)
            await self.jobservice.mark_reported(name)
        except Exception as exc:  # one entry's trouble never stops the others
            self._failed(name, exc)
            return
        self._retry.pop(name, None)

    def _failed(self, name: str, exc: Exception) -> None:
        now = self.clock()
        retry = self._retry.get(name) or _Retry(0, now, now)
        retry.failures += 1
        retry.next_at = now + min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (retry.failures - 1))
        self._retry[name] = retry
        text = str(exc) if isinstance(exc, AgentError) else repr(exc)
        # A refusal once at WARNING (it will not pass by itself); an outage at INFO: if
        # it lasts, the health problem below says so once.
        passing = isinstance(exc, ServerUnreachable | JobServiceUnavailable)
        level = logging.INFO if passing or retry.failures > 1 else logging.WARNING
        log.log(
            level, "quarantined job file %s not reported yet (%d): %s", name, retry.failures, text
        )

    def _judge(self) -> None:
        now = self.clock()
        late = any(now - r.since >= PROBLEM_AFTER_S for r in self._retry.values())
        before = self.jobservice.has_problem(PROBLEM)
        self.jobservice.set_problem(PROBLEM, late)
        if late and not before:
            log.warning(
                "damaged job files could not be reported for %d minutes: "
                "the job service is reported as having a problem",
                PROBLEM_AFTER_S // 60,
            )
        elif before and not late:
            log.info("damaged job files are reported again")
