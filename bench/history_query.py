"""SQL queries and latency of `broadcast(id)` by number of call attempts.

    .venv/bin/python bench/history_query.py [postgresql+psycopg://postgres@127.0.0.1/rundruf_bench]

Makes a fresh database, seeds one tenant with a broadcast of N attempts, and
asks for the broadcast with every attempt and member through the real ASGI app.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from cryptography.fernet import Fernet
from sqlalchemy import event, insert

from api.app import create_app
from api.bootstrap import bootstrap
from api.migrate import upgrade
from api.models import (
    Broadcast,
    BroadcastGroup,
    BroadcastStatus,
    CallAttempt,
    CallOutcome,
    PbxGroup,
    PbxUser,
    Role,
    Tenant,
    User,
)
from api.security import hash_password
from api.services import auth
from api.settings import load_settings

QUERY = """query($id: ID!) { broadcast(id: $id) { id status group { agentExtension }
  attempts { memberName attemptNo outcome ringingAt member { name extension state } } } }"""


async def seed(rt: object, n: int) -> uuid.UUID:
    now = datetime.now(UTC)
    async with rt.db.transaction() as s:  # type: ignore[attr-defined]
        tenant = Tenant(name=f"Bench {n}")
        s.add(tenant)
        await s.flush()
        group = PbxGroup(tenant_id=tenant.id, pbx_id="g", name="G")
        s.add(group)
        await s.flush()
        bg = BroadcastGroup(
            tenant_id=tenant.id,
            group_id=group.id,
            agent_name="Rundruf G",
            agent_extension="299",
            pin_sealed="x",
        )
        s.add(bg)
        await s.flush()
        users = [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant.id,
                "pbx_id": f"u{i}",
                "name": f"U {i}",
                "extension": str(1000 + i),
                "state": 2,
                "callrouting_only": False,
                "synced_at": now,
            }
            for i in range(n)
        ]
        await s.execute(insert(PbxUser), users)
        b = Broadcast(
            tenant_id=tenant.id,
            broadcast_group_id=bg.id,
            agent_broadcast_id="b",
            group_name="G",
            mode=2,
            status=BroadcastStatus.COMPLETED,
            started_at=now - timedelta(minutes=1),
            member_count=n,
        )
        s.add(b)
        await s.flush()
        await s.execute(
            insert(CallAttempt),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant.id,
                    "broadcast_id": b.id,
                    "member_user_id": u["id"],
                    "member_pbx_id": u["pbx_id"],
                    "member_name": u["name"],
                    "attempt_no": 1,
                    "ringing_at": now,
                    "outcome": CallOutcome.CONFIRMED,
                }
                for u in users
            ],
        )
        s.add(
            User(
                tenant_id=tenant.id,
                email=f"a{n}@bench.example",
                name="A",
                role=Role.TENANT_ADMIN,
                password_hash=hash_password("bench password"),
            )
        )
        return b.id


async def main(url: str) -> None:
    server, _, name = url.replace("postgresql+psycopg://", "postgresql://").rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    settings = load_settings(database_url=url, secret_key=Fernet.generate_key().decode())
    upgrade(settings)
    rt = bootstrap(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(rt)
    statements: list[str] = []
    event.listen(
        rt.db.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2])
    )
    print(f"{'attempts':>8} {'queries':>8} {'p50 ms':>8} {'max ms':>8}")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://bench") as client:
        for n in (10, 100, 1000, 5000):
            broadcast_id = await seed(rt, n)
            token = (await auth.login(rt, f"a{n}@bench.example", "bench password", "b")).token
            times, counts = [], []
            for _ in range(7):
                statements.clear()
                start = time.perf_counter()
                r = await client.post(
                    "/graphql",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"query": QUERY, "variables": {"id": str(broadcast_id)}},
                )
                times.append((time.perf_counter() - start) * 1000)
                counts.append(len(statements))
                assert len(r.json()["data"]["broadcast"]["attempts"]) == n
            print(f"{n:>8} {max(counts):>8} {statistics.median(times):>8.1f} {max(times):>8.1f}")
    await rt.db.dispose()
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1]
            if len(sys.argv) > 1
            else "postgresql+psycopg://postgres@127.0.0.1:5432/rundruf_bench"
        )
    )
