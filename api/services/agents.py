"""The customer agents: enrolment, who they are, their commands and health."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from api.db import after_commit
from api.domain import health, validation
from api.domain.connection import OFFLINE_AFTER_POLLS
from api.domain.lost_triggers import FAILURE_AGENT_UNREACHABLE, FAILURE_OUTCOME_UNKNOWN
from api.domain.scrub import secret_name
from api.errors import BadInput, NotFound, Unauthenticated
from api.models import (
    Command,
    CommandStatus,
    Installation,
    Language,
    License,
    PbxSettings,
    Tenant,
)
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.security import SecretUnreadable, hash_token, new_token
from api.services import agent_results, audit, known_secrets, lost_triggers, mirror, notify
from edge_agent.pbx import text as pbx_text

OPEN = (CommandStatus.PENDING, CommandStatus.DELIVERED)
AGENT_TOKEN_PREFIX = "rda_"  # noqa: S105 - a prefix, not a secret
# The code that starts the reason of a command whose result could not be applied.
UNAPPLIED = "resultNotApplied"
ERROR_MAX = 4000  # a command's error as stored
# Scrubbing is linear, but bounded all the same: what lies beyond this is never stored.
ERROR_SCRUBBED_MAX = 16 * ERROR_MAX
# Failures of the database, not of the result: answered as errors, so the agent retries.
TRANSIENT = (OperationalError, InterfaceError, PoolTimeout)
# Logged with the error of a result kept out by the server's configuration (a secret the
# configured key cannot open): the agent keeps and resends it until the key is right.
MISCONFIGURED = "serverMisconfigured"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agent:
    """An enrolled installation acting with its token."""

    installation_id: uuid.UUID
    tenant_id: uuid.UUID


@dataclass(frozen=True)
class Delivery:
    command: Command
    secrets: dict[str, Any]
    # The server's clock as it sends the command: the agent measures the command's age
    # (createdAt, expiresAt) against this, in the server's clock, whatever its own says.
    sent_at: datetime


@dataclass(frozen=True)
class Enrolled:
    installation: Installation
    token: str
    tenant_name: str


# The installation's columns (api/models/tenancy.py); the input guard refuses longer texts.
HOSTNAME_MAX = 255
AGENT_VERSION_MAX = 64


async def register(rt: Runtime, license_key: str, hostname: str, agent_version: str) -> Enrolled:
    """Enrols an agent with a license key; the token is returned here once."""
    hostname = validation.name(hostname, "hostname", max_length=HOSTNAME_MAX)
    agent_version = validation.name(agent_version, "agentVersion", max_length=AGENT_VERSION_MAX)
    now = rt.clock()
    async with rt.db.transaction() as session:
        lic = await session.scalar(
            select(License).where(License.key_hash == hash_token(license_key.strip()))
        )
        tenant = await session.get(Tenant, lic.tenant_id) if lic else None
        if lic is None or tenant is None or not tenant.active:
            raise NotFound("unknown license key", field="licenseKey")
        if lic.revoked_at is not None or lic.valid_until <= now:
            raise BadInput("this license is revoked or expired", field="licenseKey")
        # One agent per customer PBX: a new enrolment (a new server, say) retires
        # the old one, which would otherwise run every command a second time.
        retired = list(
            await session.scalars(
                update(Installation)
                .where(Installation.tenant_id == lic.tenant_id, Installation.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(Installation.id)
            )
        )
        after_commit(session, lambda: notify.revoked(rt, retired))
        # The tenant's pages hear of the new installation at once (agentConnectionChanged).
        after_commit(
            session,
            lambda: rt.hub.publish(tenant_events(lic.tenant_id), notify.event("health")),
        )
        token = new_token(AGENT_TOKEN_PREFIX.rstrip("_"))
        inst = Installation(
            tenant_id=lic.tenant_id,
            license_id=lic.id,
            hostname=hostname,
            agent_version=agent_version,
            token_hash=hash_token(token),
        )
        session.add(inst)
        await session.flush()
        audit.record(
            session,
            None,
            "installation.register",
            tenant_id=lic.tenant_id,
            target=inst.id,
            hostname=hostname,
        )
    return Enrolled(installation=inst, token=token, tenant_name=tenant.name)


async def is_agent_token(rt: Runtime, token: str) -> bool:
    """Whether `token` is a valid agent token (for the larger bodies agents may send)."""
    try:
        await agent_for_token(rt, token)
    except Unauthenticated:
        return False
    return True


async def agent_for_token(rt: Runtime, token: str) -> Agent:
    """The installation behind an agent token; revoked ones are refused.

    An expired license does not lock the agent out: alarms are life safety, so
    it keeps running them; configuration changes are refused elsewhere.
    """
    async with rt.db.reading() as session:
        row = (
            await session.execute(
                select(Installation.id, Installation.tenant_id)
                .join(License, License.id == Installation.license_id)
                .join(Tenant, Tenant.id == Installation.tenant_id)
                .where(
                    Installation.token_hash == hash_token(token),
                    Installation.revoked_at.is_(None),
                    License.revoked_at.is_(None),
                    Tenant.active.is_(True),
                )
            )
        ).first()
    if row is None:
        raise Unauthenticated("unknown or revoked agent token")
    return Agent(installation_id=row[0], tenant_id=row[1])


async def still_allowed(rt: Runtime, agent: Agent, token: str) -> bool:
    try:
        return await agent_for_token(rt, token) == agent
    except Unauthenticated:
        return False


async def take_open_commands(rt: Runtime, agent: Agent, skip: set[uuid.UUID]) -> list[Delivery]:
    """Open commands of the tenant, oldest first, marked delivered to this agent."""
    now = rt.clock()
    async with rt.db.transaction() as session:
        commands = list(
            (
                await session.scalars(
                    select(Command)
                    .where(
                        Command.tenant_id == agent.tenant_id,
                        # Delivered to another installation: that one answers for it.
                        (Command.status == CommandStatus.PENDING)
                        | (
                            (Command.status == CommandStatus.DELIVERED)
                            & (
                                Command.installation_id.is_(None)
                                | (Command.installation_id == agent.installation_id)
                            )
                        ),
                        Command.expires_at > now,
                        Command.id.not_in(skip) if skip else Command.id.is_not(None),
                    )
                    .order_by(Command.created_at, Command.id)
                    .limit(100)
                )
            ).all()
        )
        for command in commands:
            if command.status is CommandStatus.PENDING:
                command.status = CommandStatus.DELIVERED
                command.delivered_at = now
            command.installation_id = agent.installation_id
    for command in commands:
        await rt.hub.publish(tenant_events(agent.tenant_id), notify.event("command", command.id))
    return [Delivery(c, _secrets(rt, c), rt.clock()) for c in commands]


def _secrets(rt: Runtime, command: Command) -> dict[str, Any]:
    sealed = command.sealed_payload
    return dict(json.loads(rt.box.open(sealed))) if sealed else {}


async def complete(
    rt: Runtime,
    agent: Agent,
    command_id: uuid.UUID,
    ok: bool,
    result: Any,
    error: str | None,
) -> Command:
    """Records the outcome once; a repeat returns the stored command unchanged.

    A result that cannot be applied (invalid, or refused by the database) fails its
    command with the reason, in a transaction of its own, and the agent is answered as
    for any outcome: no result may keep it from the commands after it.
    """
    # The agent's words may carry PBX text: stored cleaned, like the mirror's; cut to
    # ERROR_MAX only after scrubbing (a cut could split a secret the scrubber must see).
    error = pbx_text.clean(error, ERROR_SCRUBBED_MAX) if error is not None else None
    result = result if isinstance(result, dict) else {"value": result}
    try:
        command, changed = await _record_retrying(rt, agent, command_id, ok, result, error)
    except (NotFound, *TRANSIENT):
        raise  # a database away for a moment: the agent sends the result again
    except SecretUnreadable:
        # Not the result's fault: never a silent, permanent failure of the command.
        log.error("%s: the result of command %s waits for the key", MISCONFIGURED, command_id)
        raise
    except Exception as exc:  # whatever the result holds, the agent goes on
        # The reason without the trace: a driver's message may quote the result's data.
        log.warning("the result of command %s cannot be applied: %s", command_id, _why(exc))
        log.debug("why the result of command %s cannot be applied", command_id, exc_info=True)
        command, changed = await _fail_unapplied(rt, agent, command_id, exc), False
    await rt.hub.publish(tenant_events(agent.tenant_id), notify.event("command", command.id))
    if changed:
        await rt.hub.publish(tenant_events(agent.tenant_id), notify.event("directory"))
    return command


async def _record_retrying(
    rt: Runtime,
    agent: Agent,
    command_id: uuid.UUID,
    ok: bool,
    result: dict[str, Any],
    error: str | None,
) -> tuple[Command, bool]:
    """`_record`, once more after an IntegrityError: a concurrent apply may have taken a
    row meanwhile (the second try sees it); a second one fails the command."""
    try:
        return await _record(rt, agent, command_id, ok, result, error)
    except IntegrityError:
        log.info("the result of command %s collided with another; trying once more", command_id)
        return await _record(rt, agent, command_id, ok, result, error)


async def _record(
    rt: Runtime,
    agent: Agent,
    command_id: uuid.UUID,
    ok: bool,
    result: dict[str, Any],
    error: str | None,
) -> tuple[Command, bool]:
    async with rt.db.transaction() as session:
        command = await session.get(Command, command_id)
        if command is None or command.tenant_id != agent.tenant_id:
            raise NotFound("command not found")
        # Viewers read the error and the result: no secret of the tenant or the command.
        stored = {k: v for k, v in result.items() if k != "directory"}
        if error is not None or stored:
            secrets = _secrets(rt, command).values()
            clean = await known_secrets.for_tenant(rt, session, agent.tenant_id, secrets)
            error = clean(error)[:ERROR_MAX] if error is not None else None
            stored = clean.tree(stored)
        # The claim: a conditional UPDATE with a row count, so two completions
        # racing (a retry after a timeout) apply once, on PostgreSQL and SQLite.
        claimed: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
            update(Command)
            .where(Command.id == command_id, Command.status.in_(OPEN))
            .values(
                status=CommandStatus.SUCCEEDED if ok else CommandStatus.FAILED,
                completed_at=rt.clock(),
                installation_id=agent.installation_id,
            )
        )
        await session.refresh(command)
        if claimed.rowcount == 0:
            # Completed before (nothing twice) or expired: the PBX may still have
            # changed, so a directory that came along is still the truth.
            changed = command.status is CommandStatus.EXPIRED and "directory" in result
            if changed:
                changed = await mirror.replace(
                    rt, session, agent.tenant_id, result["directory"], command.created_at
                )
            if command.status is CommandStatus.EXPIRED:
                # A trigger's late outcome still says whether a broadcast ran.
                await agent_results.late_trigger(rt, session, command, ok, result, error)
        else:
            applied = await agent_results.apply(
                rt, session, command, ok, result, error, _secrets(rt, command)
            )
            changed = applied.directory_changed
            command.result = stored
            command.error = None if ok else (error or "the agent reported a failure without reason")
    return command, changed


async def _fail_unapplied(
    rt: Runtime, agent: Agent, command_id: uuid.UUID, exc: Exception
) -> Command:
    """Fails the command with a coded reason (no trace, no values from the result); a
    command completed or expired meanwhile stays as it is (its late result is dropped)."""
    reason = f"{UNAPPLIED}: the central service could not store the agent's result ({_why(exc)})"
    async with rt.db.transaction() as session:
        await session.execute(
            update(Command)
            .where(Command.id == command_id, Command.status.in_(OPEN))
            .values(
                status=CommandStatus.FAILED,
                completed_at=rt.clock(),
                installation_id=agent.installation_id,
                result={"errorCode": UNAPPLIED},
                error=reason,
            )
        )
        command = await session.get(Command, command_id)
    if command is None:  # deleted in between: nothing to tell anyone
        raise NotFound("command not found")
    return command


def _why(exc: Exception) -> str:
    """A short reason in the service's own words: a database message may quote the data."""
    if isinstance(exc, BadInput):
        return str(exc)  # written here, about the shape of the result
    if isinstance(exc, IntegrityError):
        return "it contradicts what is stored"
    # The driver's own refusal (a NUL, a text that is not UTF-8) arrives wrapped.
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    if isinstance(exc, DataError) or isinstance(cause, ValueError):  # UnicodeError, too
        return "the database refused a value in it"
    return f"unexpected {type(cause).__name__}"


@dataclass(frozen=True)
class HealthReport:
    agent_version: str
    pbx_reachable: bool
    jobservice_reachable: bool | None
    alarm_service_ok: bool
    participant_count: int
    reported_at: datetime
    # Optional: an agent older than issue 13 reports none of these (unknown).
    pbx_adapter: str | None = None
    dialer: str | None = None
    sip_registration: health.SipRegistrationIn | None = None
    journal_writable: bool | None = None  # an agent older than issue 14 does not say


@dataclass(frozen=True)
class HealthAnswer:
    """The heartbeat's answer: when to report next, and the tenant's language (the
    agent's own trigger-call line speaks it; a change is also pushed by updateSettings,
    this brings it to an agent that missed that command)."""

    poll_interval_seconds: int
    language: Language


def _runs_on(report: HealthReport, now: datetime) -> dict[str, Any]:
    """The columns of what the installation runs on, checked (BadInput names the field)."""
    dialer = health.dialer(report.dialer)
    sip = health.sip_registration(report.sip_registration, dialer, now)
    error = sip.last_error if sip else None
    return {
        "pbx_adapter": health.pbx_adapter(report.pbx_adapter),
        "dialer": dialer,
        "sip_registration": sip.state if sip else None,
        "sip_registration_since": sip.since if sip else None,
        "sip_error_code": error.code if error else None,
        "sip_error_params": error.params if error else None,
        "sip_error_detail": error.detail if error else None,
        "sip_error_at": error.at if error else None,
    }


async def report_health(rt: Runtime, agent: Agent, report: HealthReport) -> HealthAnswer:
    """Stores the report unless it is older than the last one; returns the poll interval
    and the tenant's language."""
    now = rt.clock()
    reported_at = validation.moment(report.reported_at, "reportedAt", now)
    agent_version = validation.printable(report.agent_version, "agentVersion", AGENT_VERSION_MAX)
    runs_on = _runs_on(report, now)
    async with rt.db.transaction() as session:
        settings = await session.get(PbxSettings, agent.tenant_id)
        tenant = await session.get(Tenant, agent.tenant_id)
        language = tenant.language if tenant is not None else Language.DE
        runs_on = await _scrubbed(rt, session, agent, runs_on)
        poll = settings.poll_interval_seconds if settings else 60
        # A report delayed beyond the offline bound (or from a clock far ahead) proves
        # nothing about now: it never moves the heartbeat.
        late = timedelta(seconds=OFFLINE_AFTER_POLLS * poll)
        fresh = timedelta(seconds=-30) <= now - reported_at <= late
        # A clock running ahead must not make later, correct reports look old.
        stamp = min(reported_at, now)
        stored = await session.execute(
            update(Installation)
            .where(
                Installation.id == agent.installation_id,
                (Installation.last_report_at.is_(None)) | (Installation.last_report_at < stamp),
            )
            .values(
                agent_version=agent_version,
                pbx_reachable=report.pbx_reachable,
                jobservice_reachable=report.jobservice_reachable,
                alarm_service_ok=report.alarm_service_ok,
                journal_writable=report.journal_writable,
                participant_count=max(0, report.participant_count),
                **runs_on,
                last_report_at=stamp,
                **({"last_heartbeat_at": now} if fresh else {}),
            )
            .returning(Installation.last_heartbeat_at)
        )
        changed = stored.one_or_none()
    if changed is not None:  # an older report changes nothing: nobody to wake
        # The heartbeat travels with the wake-up: a page's agent state that stays the
        # same needs no read of the database (schema/platform/subscriptions.py).
        message = notify.health(agent.installation_id, changed[0], poll)
        await rt.hub.publish(tenant_events(agent.tenant_id), message)
    return HealthAnswer(poll, language)


async def _scrubbed(
    rt: Runtime, session: AsyncSession, agent: Agent, runs_on: dict[str, Any]
) -> dict[str, Any]:
    """The SIP error's detail and texts without the tenant's secrets (viewers read them)."""
    detail, params = runs_on["sip_error_detail"], runs_on["sip_error_params"] or {}
    if detail is None and not any(isinstance(v, str) or secret_name(k) for k, v in params.items()):
        return runs_on
    clean = await known_secrets.for_tenant(rt, session, agent.tenant_id)
    return {
        **runs_on,
        "sip_error_detail": clean.optional(detail),
        # tree(): texts scrubbed, a number under a secret's name (a PIN) hidden too.
        "sip_error_params": runs_on["sip_error_params"] and clean.tree(params),
    }


async def expire_overdue(rt: Runtime) -> int:
    """Open commands past their time become expired, with the reason; returns how many.

    A broadcast trigger without an outcome is never lost silently: it leaves a failed
    trigger in the history and a mail to the tenant (api/services/lost_triggers.py),
    AGENT_UNREACHABLE if no agent received it, OUTCOME_UNKNOWN if one did (its machine
    may have died with it; a late success withdraws the row,
    docs/decisions/late-broadcasts.md).
    """
    now = rt.clock()
    rows: list[tuple[uuid.UUID, uuid.UUID, str, CommandStatus]] = []
    async with rt.db.transaction() as session:
        # One conditional UPDATE per status, so each row says what it was when it expired.
        for status in OPEN:
            claimed = await session.execute(
                update(Command)
                .where(Command.status == status, Command.expires_at <= now)
                .values(
                    status=CommandStatus.EXPIRED,
                    completed_at=now,
                    error="no agent completed this command in time: is the "
                    "Rundruf Manager Service running and connected?",
                )
                .returning(Command.id, Command.tenant_id, Command.type)
            )
            rows += [(i, t, type_, status) for i, t, type_ in claimed.all()]
        # The conditional UPDATE claimed each once: one history row per lost trigger.
        for command_id, _, type_, was in rows:
            if type_ == lost_triggers.TYPE:
                command = await session.get(Command, command_id)
                assert command is not None  # claimed in this transaction
                # Handed to the socket is not received: the agent may have died with it.
                code = (
                    FAILURE_AGENT_UNREACHABLE
                    if was is CommandStatus.PENDING
                    else FAILURE_OUTCOME_UNKNOWN
                )
                await lost_triggers.record(rt, session, command, now, code)
    for command_id, tenant_id, _, _ in rows:
        await rt.hub.publish(tenant_events(tenant_id), notify.event("command", command_id))
    return len(rows)
