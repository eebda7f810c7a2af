"""The Rundruf Manager Service: wires the channel, the PBX, the ledger and the heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.broadcast.intake import JobIntake
from edge_agent.broadcast.manager import Broadcasts, Trigger
from edge_agent.broadcast.model import Mode, Stop
from edge_agent.broadcast.reporter import Reporter
from edge_agent.broadcast.runner import CallSettings
from edge_agent.cache import LocalCache
from edge_agent.channel import CommandChannel
from edge_agent.command_clock import aware_time, local_times
from edge_agent.commands import Commands
from edge_agent.config import Enrolment
from edge_agent.dialer import Dialer, DialerError, make_dialer
from edge_agent.dialer.sip import SipDialer
from edge_agent.errors import ServerRefused, ServerUnreachable
from edge_agent.ivr.answering import IvrAnswering
from edge_agent.ivr.notices import NoticeOutbox
from edge_agent.ivr.sip_router import SipRouter
from edge_agent.jobservice import JobServiceClient
from edge_agent.ledger import Ledger, Outcome
from edge_agent.outcomes import OutcomeSender, storable
from edge_agent.pbx.errors import PbxError
from edge_agent.pbx.port import Pbx
from edge_agent.server import Server
from edge_agent.settings import VERSION, AgentSettings

log = logging.getLogger(__name__)
# The longest a command may run before the next one goes: a credentials check, the
# longest, runs this many PBX scripts (sign-in, directory and states twice, user, group,
# members), each bounded by swyx_timeout_seconds; at the default minute, 9 minutes, below
# the server's 15-minute expiry (issue 14, point 1, review point 6).
SCRIPTS_PER_COMMAND = 8
# A directory read: the directory script and the states read.
SCRIPTS_PER_DIRECTORY = 2
MARGIN_S = 60.0
# Commands that run on a lane of their own: an alarm never waits for a slow PBX command.
OWN_LANE = frozenset({"triggerBroadcast", "cancelBroadcast"})
# A command received after its expiry: refused with this code (the server words it).
EXPIRED_CODE = "commandExpired"
EXPIRED = "expired before the agent could run it"
# A broadcast run that broke shows as "alarm service not ok" for this long.
FAILURE_MEMORY = timedelta(minutes=10)


def command_timeout(settings: AgentSettings) -> float:
    return SCRIPTS_PER_COMMAND * settings.swyx_timeout_seconds + MARGIN_S


def directory_timeout(settings: AgentSettings) -> float:
    return SCRIPTS_PER_DIRECTORY * settings.swyx_timeout_seconds + MARGIN_S


def timed_out(seconds: float) -> str:
    return f"the command did not finish within {seconds:.0f} seconds and was stopped"


def _expired(command: dict[str, Any]) -> bool:
    expires = local_times(command).expires_at  # in our clock: a skew does not expire it
    return expires is not None and expires <= datetime.now(UTC)


class AgentService:
    def __init__(
        self,
        settings: AgentSettings,
        enrolment: Enrolment,
        pbx: Pbx,
        dialer: Dialer | None = None,
    ) -> None:
        self.settings = settings
        self.pbx = pbx
        self.cache = LocalCache(settings.state_dir)
        self.ledger = Ledger(settings.state_dir / "ledger.db")
        self.server = Server(enrolment, settings.verify_tls)
        self.commands = Commands(pbx, self.cache, self.server)
        self.command_timeout = command_timeout(settings)
        self.directory_timeout = directory_timeout(settings)
        self.outcomes = OutcomeSender(
            self.server, self.fresh_directory, settings.backoff_cap_seconds
        )
        self.channel = CommandChannel(enrolment, settings, self.handle, own_lane=OWN_LANE)
        self.jobservice = (
            JobServiceClient(settings.jobservice_url, settings.jobservice_token.get_secret_value())
            if settings.jobservice_url and settings.jobservice_token
            else None
        )
        self.dialer = dialer or make_dialer(settings)
        # A registration that comes or goes is reported at once, not a poll interval later.
        self.dialer.on_status_change(self.commands.health_changed.set)
        calls = CallSettings(
            ring_timeout_s=settings.ring_timeout_seconds,
            retry_pause_s=settings.retry_pause_seconds,
            max_attempts=settings.max_attempts,
        )
        self.broadcasts = Broadcasts(
            settings.state_dir,
            self.cache,
            pbx,
            self.dialer,
            settings.channels,
            calls,
        )
        # The journal falling behind (a full disk) or catching up is reported at once.
        self.broadcasts.journal.on_health_change = self.commands.health_changed.set
        self.reporter = Reporter(
            self.broadcasts.journal,
            self.server,
            self.jobservice,
            settings.backoff_cap_seconds,
            hide=[
                settings.sip_password.get_secret_value(),
                settings.jobservice_token.get_secret_value() if settings.jobservice_token else None,
                enrolment.token,
            ],
        )
        # A broadcast resumed after a crash numbers its events above the server's.
        self.broadcasts.last_stored = self.reporter.last_stored
        self.commands.handlers["triggerBroadcast"] = self.trigger_from_command
        self.commands.handlers["cancelBroadcast"] = self.cancel_from_command
        # Wrong-PIN notices of the agent's own IVR wait on disk until the server has them.
        self.notices = NoticeOutbox(settings.state_dir)
        # The trigger call answered by the agent itself over SIP (edge_agent/ivr/).
        self.ivr = (
            IvrAnswering(settings.state_dir, self.cache, self.broadcasts, outbox=self.notices)
            if settings.answers_calls
            else None
        )
        if self.ivr is not None and isinstance(self.dialer, SipDialer):
            # Taken by the user agent when the dialer starts (at once if it runs already).
            self.dialer.answer_calls(SipRouter(self.ivr))
        self._background: list[asyncio.Task[None]] = []
        self._dialer_start: asyncio.Task[None] | None = None
        self.intake = (
            JobIntake(self.jobservice, self.broadcasts, self.server)
            if self.jobservice is not None
            else None
        )

    async def trigger_from_command(
        self, payload: dict[str, Any], _: dict[str, Any]
    ) -> dict[str, Any]:
        """`triggerBroadcast` from the website: the same executor and history as a call."""
        trigger = Trigger(
            source="command",
            source_id=str(payload["commandId"]),
            mode=Mode(int(payload["mode"])),
            group_id=str(payload["groupPbxId"]),
            caller_name=str(payload.get("requestedBy") or "") or None,
            # A command the agent gets late (it was offline) keeps the website's timeout.
            raised_at=aware_time(payload.get("commandCreatedAt")),
        )
        if trigger.mode is Mode.ALARM_RECORDED:
            raise ValueError("mode 3 needs a recorded message; only a trigger call has one")
        return {"broadcastId": await self.broadcasts.accept(trigger)}

    async def cancel_from_command(
        self, payload: dict[str, Any], _: dict[str, Any]
    ) -> dict[str, Any]:
        """`cancelBroadcast` from the website: stops the broadcast, if it still runs.

        Succeeds either way: `stopped` lists it when this stop ended it (empty: it had
        ended or was stopped before; the history says how).
        """
        reason = payload.get("reason")
        stop = Stop(
            by=str(payload.get("requestedBy") or "") or None,
            via="website",
            at=datetime.now(UTC),
            reason=str(reason) if reason else None,
        )
        stopped = await self.broadcasts.stop(stop, broadcast_id=str(payload["broadcastId"]))
        return {"stopped": stopped}

    async def handle(self, command: dict[str, Any]) -> None:
        """Executes a command at most once; a repeat gets the stored outcome."""
        command_id = str(command["id"])
        outcome = self.ledger.get(command_id)
        if outcome is None and _expired(command):
            # The server gave up on it already: doing it now would surprise everyone.
            outcome = Outcome(ok=False, result={"errorCode": EXPIRED_CODE}, error=EXPIRED)
            self.ledger.record(command_id, outcome)
        elif outcome is None:
            log.info("executing %s %s", command["type"], command_id)
            # The id makes a trigger idempotent in the broadcast journal, too.
            created = local_times(command).created_at
            payload = {
                **(command.get("payload") or {}),
                "commandId": command_id,
                # On the agent's clock (measured in the server's): skew does not age it.
                "commandCreatedAt": created.isoformat() if created is not None else None,
            }
            try:
                async with asyncio.timeout(self.command_timeout):
                    outcome = await self.commands.run(
                        str(command["type"]), payload, command.get("secrets") or {}
                    )
            except TimeoutError:
                # A PBX that never answers must not keep the commands after it waiting;
                # what it did before it stopped shows in the directory, as for any failure.
                error = timed_out(self.command_timeout)
                outcome = Outcome(ok=False, result=await self.fresh_directory(), error=error)
            outcome = storable(outcome, hide=(command.get("secrets") or {}).values())
            self.ledger.record(command_id, outcome)
        else:
            log.info("command %s seen before: answering with the stored outcome", command_id)
            if "directory" in outcome.result:
                # The stored snapshot is old: the mirror gets today's directory.
                fresh = await self.fresh_directory()
                outcome = Outcome(outcome.ok, {**outcome.result, **fresh}, outcome.error)
        await self._report(command_id, outcome)

    async def fresh_directory(self) -> dict[str, Any]:
        """``{"directory": …}`` as the PBX has it now, or ``{}`` if it cannot say in time:
        a directory read is bounded like a command (a replay, a resend, a stopped
        command's outcome all wait for it)."""
        try:
            async with asyncio.timeout(self.directory_timeout):
                return await self.commands.fresh_directory()
        except TimeoutError:
            log.warning("the directory could not be read within %.0f s", self.directory_timeout)
            return {}

    async def _report(self, command_id: str, outcome: Outcome) -> None:
        # Bounded: an outcome that cannot be sent waits elsewhere, not in the queue.
        await self.outcomes.send(command_id, outcome)

    async def start_dialer(self) -> None:
        """Starts the dialer (SIP: registers at the PBX) long before any alarm; a failure is
        logged and shows in the health report, and the next heartbeat tries again."""
        try:
            await self.dialer.start()
        except DialerError as exc:
            log.error("the dialer cannot start: %s", exc)

    def kick_dialer(self) -> None:
        """Starts the dialer in the background unless a start is under way: looking up
        the PBX's name may take its time, and neither the command channel nor the
        heartbeat may wait for it (the health report says how the start stands)."""
        if self._dialer_start is None or self._dialer_start.done():
            self._dialer_start = asyncio.create_task(self.start_dialer(), name="dialer-start")

    async def heartbeat(self) -> None:
        while True:
            try:
                self.kick_dialer()  # again, if starting failed before
                answer = await self.server.report_health(await self.health())
                if self.cache.follow(answer.poll_interval_seconds, answer.language):
                    self.cache.save()
            except (ServerUnreachable, ServerRefused) as exc:
                log.warning("health report failed: %s", exc)
            except Exception:  # the heartbeat must outlive any one bad report
                log.exception("health report failed unexpectedly")
            changed = self.commands.health_changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cache.poll_interval):
                    await changed.wait()
            changed.clear()

    async def alarm_service_ok(self) -> bool:
        """The journal answers and the loops that take and report alarms are alive."""
        dead = [t.get_name() for t in self._background if t.done()]
        if dead:
            log.error("alarm service loops stopped: %s", ", ".join(dead))
        failed = self.broadcasts.last_failure
        recent = failed is not None and datetime.now(UTC) - failed < FAILURE_MEMORY
        return not dead and not recent and await self.broadcasts.journal.usable()

    async def health(self) -> dict[str, Any]:
        registration = self.dialer.registration_status()
        return {
            "agentVersion": VERSION,
            # What this installation really runs on: a simulator is never silent.
            "pbxAdapter": self.pbx.adapter,
            "dialer": self.dialer.kind,
            "sipRegistration": registration.to_json() if registration is not None else None,
            "pbxReachable": await self.pbx.reachable(),
            "jobserviceReachable": (
                await self.jobservice.healthy() if self.jobservice is not None else None
            ),
            "alarmServiceOk": await self.alarm_service_ok(),
            # False while broadcasts run from memory (a full disk, say): calls go on.
            "journalWritable": self.broadcasts.journal.writable,
            "participantCount": self.cache.participant_count(),
            "reportedAt": datetime.now(UTC).isoformat(),
        }

    async def run(self) -> None:
        if self.cache.pbx_login is not None:
            try:
                await self.commands.ensure_login()
            except PbxError as exc:
                log.warning("signing in to the PBX failed: %s", exc.message)
        self.kick_dialer()  # registered before the first alarm, not at it
        await self.broadcasts.resume()
        self._background = background = [
            asyncio.create_task(self.heartbeat(), name="heartbeat"),
            asyncio.create_task(self.reporter.run_forever(), name="reporter"),
            asyncio.create_task(self.outcomes.resend_forever(), name="outcomes"),
            asyncio.create_task(self.broadcasts.journal.watch_forever(), name="journal-watch"),
        ]
        if self.intake is not None:
            background.append(asyncio.create_task(self.intake.run_forever(), name="intake"))
        background.append(
            asyncio.create_task(self.notices.send_forever(self.server), name="ivr-notices")
        )
        if self.ivr is not None:
            await self.ivr.prepare()  # prompts in memory before the first trigger call
        try:
            await self.channel.run_forever()
        finally:
            starting = [self._dialer_start] if self._dialer_start is not None else []
            for task in [*background, *starting]:
                task.cancel()
            await asyncio.gather(*background, *starting, return_exceptions=True)
            if self.ivr is not None:
                await self.ivr.close()  # calls under way hang up; their broadcasts run on
            await self.broadcasts.close()
            await self.dialer.close()
            await self.server.aclose()
            if self.jobservice is not None:
                await self.jobservice.aclose()
            self.ledger.close()
