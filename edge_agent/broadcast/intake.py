"""The long poll of the job service: a posted job starts its broadcast at once.

The job service answers a `GET /jobs?wait=S` as soon as a job it has not
been told about arrives (`known` lists the jobs already running), so the
first call goes out within milliseconds of the routing script's post, not at
the next interval. Notices (wrong PINs) and job files the job service quarantined
(accepted alarms it could not read) ride along to the central service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from edge_agent.broadcast.damaged_jobs import DamagedJobReporter
from edge_agent.broadcast.manager import Broadcasts, trigger_from_job
from edge_agent.broadcast.model import Stop, find_group
from edge_agent.channel import full_jitter
from edge_agent.command_clock import aware_time
from edge_agent.errors import AgentError, ServerRefused, ServerUnreachable
from edge_agent.jobservice import JobServiceClient, JobServiceRefused, JobServiceUnavailable
from edge_agent.server import Server

log = logging.getLogger(__name__)

# Below the job service's 60 s maximum and most proxies' idle timeouts.
WAIT_S = 25.0
# A job service that is down is asked again soon: alarms queue there meanwhile.
BACKOFF_CAP_S = 5.0
MAX_KNOWN = 100
# Wrong-PIN notices are mails to people: a few seconds late is fine.
NOTICE_INTERVAL_S = 5.0
# A job of this mode stops the group's running broadcast (the menu's 0, issue 17).
STOP_MODE = 0


class JobIntake:
    def __init__(
        self, jobservice: JobServiceClient, broadcasts: Broadcasts, server: Server
    ) -> None:
        self.jobservice = jobservice
        self.broadcasts = broadcasts
        self.server = server
        self.seen: set[str] = set()  # job ids accepted by this process
        self.damaged = DamagedJobReporter(
            jobservice, server.report_notice, self._ran if broadcasts is not None else None
        )

    async def run_forever(self) -> None:
        notices = asyncio.create_task(self.notices_forever(), name="notices")
        try:
            await self._poll_forever()
        finally:
            notices.cancel()
            await asyncio.gather(notices, return_exceptions=True)

    async def _poll_forever(self) -> None:
        attempt = 0
        while True:
            asked = time.monotonic()
            try:
                # The job service takes at most 100 known ids; more is a runaway anyway.
                known = sorted(self.seen)[:MAX_KNOWN]
                jobs = await self.jobservice.pending_jobs(WAIT_S, known=known)
                attempt = 0
            except (JobServiceUnavailable, JobServiceRefused) as exc:
                delay = full_jitter(attempt, BACKOFF_CAP_S)
                attempt += 1
                log.warning("job service: %s; asking again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:  # the intake must outlive any one bad answer
                log.exception("asking the job service failed unexpectedly")
                await asyncio.sleep(BACKOFF_CAP_S)
                continue
            pending, accepted = set(), 0
            for job in jobs:
                pending.add(job["id"])
                if job["id"] not in self.seen and await self._accept(job):
                    accepted += 1
            # Deleted jobs leave the list the job service must be told about.
            self.seen &= pending
            if not accepted and time.monotonic() - asked < WAIT_S / 2:
                # An early answer with nothing accepted (a job that cannot be accepted
                # now, say) must not become a busy loop.
                await asyncio.sleep(1.0)

    async def _accept(self, job: dict[str, object]) -> bool:
        """Starts the job's broadcast; False when it must be tried again on the next poll."""
        if job.get("mode") == STOP_MODE:
            return await self._stop(job)
        try:
            trigger = trigger_from_job(dict(job), self.jobservice.recording)
            await self.broadcasts.accept(trigger)
        except (KeyError, TypeError, ValueError) as exc:
            # Never runnable; known from now on, so the poll does not return for it.
            log.error("job %s is malformed and cannot run: %r", job.get("id"), exc)
        except AgentError as exc:
            log.error("job %s cannot run now: %s", job.get("id"), exc)
            return False
        except Exception:  # a disk error, say: the job stays pending and is tried again
            log.exception("job %s could not be accepted", job.get("id"))
            return False
        self.seen.add(str(job["id"]))
        return True

    async def _stop(self, job: dict[str, object]) -> bool:
        """A stop by phone through the call routing: the group's broadcasts that were
        running when the job service took the job stop here in the agent (journaled
        first; the central service learns it with the report), then the job is deleted.

        Taken up again after a restart (the deletion failed), it stops nothing new.
        """
        job_id = str(job.get("id"))
        try:
            received = aware_time(job.get("receivedAt"))
            group = find_group(
                self.broadcasts.cache.broadcast_groups,
                _text(job.get("agentNumber")),
                _text(job.get("groupId")),
            )
            caller = _text(job.get("callerNumber"))
            stop = Stop(by=caller, via="phone", at=received or _now())
            stopped = (
                await self.broadcasts.stop(stop, group_pbx_id=group, started_before=received)
                if group is not None
                else []
            )
        except Exception:  # a disk error, say: the job stays and is tried again
            log.exception("stop job %s could not be carried out", job_id)
            return False
        log.info("stop job %s from %r stopped %s", job_id, caller, stopped or "nothing")
        self.seen.add(job_id)
        try:
            await self.jobservice.delete_job(job_id)
        except (JobServiceUnavailable, JobServiceRefused) as exc:  # asked again later
            log.warning("stop job %s not deleted yet: %s", job_id, exc)
        return True

    async def notices_forever(self) -> None:
        """Forwards notices on their own loop: a slow server must not delay the job poll."""
        while True:
            try:
                await self.forward_notices()
            except Exception:  # the loop must outlive any one bad notice
                log.exception("forwarding notices failed unexpectedly")
            try:
                await self.forward_quarantine()
            except Exception:
                log.exception("reporting quarantined job files failed unexpectedly")
            await asyncio.sleep(NOTICE_INTERVAL_S)

    async def forward_notices(self) -> None:
        """Hands wrong-PIN notices to the central service, which mails the tenant."""
        try:
            notices = await self.jobservice.pending_notices()
            for notice in notices:
                await self.server.report_notice(
                    {
                        "noticeId": notice["id"],
                        "kind": notice.get("kind"),
                        "agentNumber": notice.get("agentNumber"),
                        "callerNumber": notice.get("callerNumber"),
                        "count": notice.get("count"),
                        "at": notice.get("receivedAt"),
                    }
                )
                await self.jobservice.delete_notice(notice["id"])
        # Either way they stay at the job service and go out on a later round.
        except (ServerUnreachable, ServerRefused, JobServiceUnavailable) as exc:
            log.info("notices not forwarded yet: %s", exc)
        except (AgentError, KeyError) as exc:
            log.warning("notices not forwarded: %r", exc)

    async def forward_quarantine(self) -> None:
        """Reports each job file the job service quarantined (an accepted alarm that
        never ran) as a jobFileDamaged notice: the central service mails the tenant and
        support and shows a failed trigger. Marked reported only once the server has
        it; a restart in between sends it again, and the server's key (the file's
        name) makes that repeat a no-op. Each entry on its own (damaged_jobs.py)."""
        await self.damaged.report_round()

    async def _ran(self, job_id: str) -> bool:
        return await self.broadcasts.journal.by_source(job_id) is not None


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _now() -> datetime:
    return datetime.now(UTC)
