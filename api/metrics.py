"""Prometheus metrics: read from the database at scrape time, rendered as text.

Used by the API's ``GET /metrics`` and by worker processes (``exposition(rt,
extra)``, where a worker adds what only it knows, e.g. its broker's queue
depth).

A small hand-written renderer of the text format 0.0.4 rather than
prometheus_client: every value here is a gauge that the database already holds
(the outbox, incidents, installations, broadcasts, commands), so nothing needs
accumulating in process memory. prometheus_client keeps process-global
registries, which with N API and M worker processes need its multiprocess mode
and a shared directory to add up right; a fresh read is right in any process,
whichever one the scraper reaches. The format itself is a few lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from api.domain.watchdog import INSTALLATION_KINDS
from api.models import (
    Broadcast,
    BroadcastStatus,
    Command,
    CommandStatus,
    Email,
    EmailStatus,
    Installation,
    PbxSettings,
    Tenant,
    WatchdogIncident,
)
from api.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_POLL_SECONDS = 60


@dataclass(frozen=True)
class Metric:
    """One metric family: its samples as (labels, value)."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    type: str = "gauge"


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        help_text = metric.help.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {metric.name} {help_text}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for labels, value in metric.samples:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            name = f"{metric.name}{{{label_text}}}" if label_text else metric.name
            lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


async def collect(rt: Runtime, now: datetime | None = None) -> list[Metric]:
    """The central service's gauges, from the database (a handful of small queries)."""
    now = now or rt.clock()
    async with rt.db.reading() as session:
        incidents = dict(
            (
                await session.execute(
                    select(WatchdogIncident.kind, func.count())
                    .where(WatchdogIncident.closed_at.is_(None))
                    .group_by(WatchdogIncident.kind)
                )
            ).all()
        )
        mails = dict(
            (await session.execute(select(Email.status, func.count()).group_by(Email.status))).all()
        )
        mails_due = await session.scalar(
            select(func.count())
            .select_from(Email)
            .where(Email.status == EmailStatus.QUEUED, Email.next_attempt_at <= now)
        )
        running = await session.scalar(
            select(func.count())
            .select_from(Broadcast)
            .where(Broadcast.status == BroadcastStatus.RUNNING)
        )
        commands_open = await session.scalar(
            select(func.count())
            .select_from(Command)
            .where(Command.status.in_([CommandStatus.PENDING, CommandStatus.DELIVERED]))
        )
        beats = (
            await session.execute(
                select(Installation.last_heartbeat_at, PbxSettings.poll_interval_seconds)
                .join(Tenant, Tenant.id == Installation.tenant_id)
                .outerjoin(PbxSettings, PbxSettings.tenant_id == Installation.tenant_id)
                .where(Installation.revoked_at.is_(None), Tenant.active.is_(True))
            )
        ).all()
    factor = rt.settings.watchdog_heartbeat_factor
    connected = sum(
        1
        for last, poll in beats
        if last is not None
        and now - last <= timedelta(seconds=factor * (poll or DEFAULT_POLL_SECONDS))
    )
    return [
        Metric(
            "rundruf_incidents_open",
            "Open watchdog incidents, by kind.",
            [({"kind": k.value}, incidents.get(k, 0)) for k in INSTALLATION_KINDS],
        ),
        Metric(
            "rundruf_installations",
            "Installations not revoked, of active tenants.",
            [({}, len(beats))],
        ),
        Metric(
            "rundruf_agents_connected",
            "Installations whose agent reported within the watchdog's limit "
            "(k poll intervals); the same rule that opens a heartbeat incident.",
            [({}, connected)],
        ),
        Metric(
            "rundruf_broadcasts_running",
            "Broadcasts the agents report as running.",
            [({}, running or 0)],
        ),
        Metric(
            "rundruf_mails",
            "Outbox rows, by status.",
            [({"status": s.value}, mails.get(s, 0)) for s in EmailStatus],
        ),
        Metric(
            "rundruf_mails_due",
            "Queued mails whose time has come: the mail workers' backlog.",
            [({}, mails_due or 0)],
        ),
        Metric(
            "rundruf_commands_open",
            "Commands to agents not yet completed (pending or delivered).",
            [({}, commands_open or 0)],
        ),
    ]


async def exposition(rt: Runtime, extra: Iterable[Metric] = ()) -> str:
    """The text a scraper gets: the database's gauges and the caller's own."""
    return render([*await collect(rt), *extra])
