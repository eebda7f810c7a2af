"""The one periodic scheduler: sends the sweep messages while it holds the lease.

It only sends messages; the workers do the work. Started twice by mistake, the
second waits for the lease and takes over within one lease TTL when the first
stops. A sweep message sent twice (a takeover right after a send) is harmless:
every sweep claims its rows atomically.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workers.lease import Lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    every: float  # seconds
    send: Callable[[], object]


class Scheduler:
    def __init__(
        self,
        lease: Lease,
        jobs: Sequence[Job],
        *,
        tick: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.jobs = list(jobs)
        self.tick_seconds = tick
        self._clock = clock
        self._due: dict[str, float] = {}
        self.leader = False
        self._said_waiting = False

    def run(self, stop: threading.Event) -> None:
        log.info("scheduler %s started; jobs: %s", self.lease.holder, self._describe())
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(self.tick_seconds)
        finally:
            self.lease.release()
            log.info("scheduler %s stopped", self.lease.holder)

    def tick(self) -> list[str]:
        """One round: renew or take the lease, then send what is due; returns what was sent."""
        if not self.lease.hold():
            if self.leader:
                log.warning("scheduler %s lost the lease; another sends now", self.lease.holder)
            elif not self._said_waiting:
                log.info("scheduler %s is waiting for the lease", self.lease.holder)
                self._said_waiting = True
            self.leader = False
            return []
        now = self._clock()
        if not self.leader:
            log.info("scheduler %s holds the lease", self.lease.holder)
            self.leader = True
            # A new holder cannot know when the last one sent: everything is due now.
            self._due = {job.name: now for job in self.jobs}
        sent = []
        for job in self.jobs:
            if now < self._due[job.name]:
                continue
            self._due[job.name] = now + job.every
            try:
                job.send()
            except Exception:
                log.exception(
                    "scheduler: sending %s failed; next try in %.0f s", job.name, job.every
                )
                continue
            log.debug("scheduler %s sent %s", self.lease.holder, job.name)
            sent.append(job.name)
        return sent

    def _describe(self) -> str:
        return ", ".join(f"{job.name} every {job.every:g} s" for job in self.jobs)


def tick_for(lease_seconds: float, jobs: Sequence[Job]) -> float:
    """Often enough to renew a third of the way into the TTL and to keep each job's pace."""
    return max(0.05, min(lease_seconds / 3, *(job.every / 2 for job in jobs), 1.0))
