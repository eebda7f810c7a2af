"""Latency of the Verlauf's list (with the outcome filter) and of the audit log at scale.

    .venv/bin/python bench/report_queries.py [--without-indexes] [postgresql+psycopg://…/db]

Makes a fresh database; seeds 2 tenants with 10,000 broadcasts each of 20 attempts
(400,000 attempts) and 300,000 audit entries; times one page (20) of each query
through the service functions, median of 20 runs, and prints each query's plan.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import psycopg
from cryptography.fernet import Fernet
from sqlalchemy import text

from api.bootstrap import bootstrap
from api.domain.broadcast_outcome import BroadcastOutcome
from api.migrate import upgrade
from api.models import Role
from api.services import audit_log, history
from api.services.actor import Actor
from api.services.broadcast_results import confirmed_counts
from api.settings import load_settings

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
URL = ARGS[0] if ARGS else "postgresql+psycopg://postgres@127.0.0.1:5432/rundruf_bench_reports"
# --without-indexes: drops migration 0013's indexes after seeding (the figures before it).
WITHOUT = "--without-indexes" in sys.argv
INDEXES = ("ix_call_attempt_confirmed", "ix_audit_log_at", "ix_audit_log_actor_at")

SEED = """
INSERT INTO tenant (id, name, language, active, created_at)
  SELECT ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'T' || t, 'de', true, now()
  FROM generate_series(1, 2) t;
INSERT INTO app_user (id, tenant_id, email, name, role, password_hash, language, active,
                      password_changed_at, created_at)
  SELECT ('00000000-0000-0000-0001-00000000000' || t)::uuid,
         ('00000000-0000-0000-0000-00000000000' || t)::uuid, 'a' || t || '@x.example', 'A',
         'tenant_admin', 'x', 'de', true, now(), now()
  FROM generate_series(1, 2) t;
INSERT INTO broadcast (id, tenant_id, agent_broadcast_id, group_name, mode, status,
                       started_at, member_count, trigger_source, last_event_seq)
  SELECT gen_random_uuid(), ('00000000-0000-0000-0000-00000000000' || (1 + b % 2))::uuid,
         'b' || b, 'G', 2, 'completed', now() - b * interval '1 minute', 20, 'phone', 0
  FROM generate_series(1, 20000) b;
INSERT INTO call_attempt (id, tenant_id, broadcast_id, member_pbx_id, member_name, attempt_no,
                          outcome)
  SELECT gen_random_uuid(), b.tenant_id, b.id, 'm' || m, 'M' || m, 1,
         CASE WHEN m < 15 OR substr(b.agent_broadcast_id, 2)::int % 20 IN (7, 8)
              THEN 'confirmed' ELSE 'no_answer' END
  FROM broadcast b, generate_series(0, 19) m;
INSERT INTO audit_log (id, tenant_id, actor_user_id, action, details, at)
  SELECT gen_random_uuid(), ('00000000-0000-0000-0000-00000000000' || (1 + i % 2))::uuid,
         ('00000000-0000-0000-0001-00000000000' || (1 + i % 2))::uuid,
         (ARRAY['group.create', 'broadcast.trigger', 'user.update'])[1 + i % 3], '{}',
         now() - i * interval '10 seconds'
  FROM generate_series(1, 300000) i;
"""


def fresh(url: str) -> None:
    server, name = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


async def timed(label: str, call: Callable[[], Awaitable[object]]) -> None:
    await call()
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        await call()
        runs.append((time.perf_counter() - start) * 1000)
    print(f"{label:55s} median {statistics.median(runs):7.2f} ms  max {max(runs):7.2f} ms")


async def main() -> None:
    fresh(URL)
    settings = load_settings(database_url=URL, secret_key=Fernet.generate_key().decode())
    upgrade(settings)
    rt = bootstrap(settings)
    async with rt.db.transaction() as s:
        for statement in SEED.split(";\n"):
            if statement.strip():
                await s.execute(text(statement))
        if WITHOUT:
            for index in INDEXES:
                await s.execute(text(f"DROP INDEX {index}"))
    # What autovacuum does soon after: statistics, and the visibility map that lets
    # the confirmed attempts be counted from the index alone.
    server = URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    t1 = uuid.UUID("00000000-0000-0000-0000-000000000001")
    u1 = uuid.UUID("00000000-0000-0000-0001-000000000001")
    admin = Actor(u1, t1, Role.TENANT_ADMIN, uuid.uuid4())
    platform = Actor(uuid.uuid4(), None, Role.PLATFORM_ADMIN, uuid.uuid4())
    flt = history.BroadcastFilter
    print("2 tenants, 20,000 broadcasts (1 in 10 all confirmed), 400,000 attempts, 300,000 audit")
    print("entries" + (", without migration 0013's indexes" if WITHOUT else ""))
    await timed(
        "broadcasts(first: 20)", lambda: history.list_broadcasts(rt, admin, flt(), 20, None)
    )
    for outcome in (BroadcastOutcome.UNCONFIRMED, BroadcastOutcome.ALL_CONFIRMED):
        await timed(
            f"broadcasts(first: 20, outcome: {outcome.name})",
            lambda o=outcome: history.list_broadcasts(rt, admin, flt(outcome=o), 20, None),
        )
    page = await history.list_broadcasts(rt, admin, flt(), 20, None)
    ids = [b.id for b in page.items]
    await timed("confirmedCount of a page (one grouped query)", lambda: confirmed_counts(rt, ids))
    af = audit_log.AuditFilter
    await timed(
        "auditLog(first: 50), tenant admin",
        lambda: audit_log.list_entries(rt, admin, af(), 50, None),
    )
    await timed(
        "auditLog(first: 50), platform admin, all",
        lambda: audit_log.list_entries(rt, platform, af(), 50, None),
    )
    await timed(
        "auditLog(first: 50), platform admin, by user",
        lambda: audit_log.list_entries(rt, platform, af(user_id=u1), 50, None),
    )
    await timed(
        "auditLog(first: 50), tenant admin, kind group",
        lambda: audit_log.list_entries(rt, admin, af(kind="group"), 50, None),
    )
    await timed("auditLog.actors, platform admin", lambda: audit_log.actors(rt, platform, None))
    await rt.db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
