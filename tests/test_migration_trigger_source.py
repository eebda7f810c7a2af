"""Migration 0011 gives every broadcast how its alarm was raised, derived for the rows
before it (issue 16, point 3), and is undone cleanly, on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from api.migrate import alembic_config
from api.models.base import UTCDateTime
from tests.conftest import drop_database, fresh_database, need_postgres

BEFORE = "0010_attempt_hold"
NOW = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
TENANT, USER = uuid.uuid4(), uuid.uuid4()
META = sa.MetaData()
IDS = {"id", "tenant_id", "created_by", "triggered_by_user_id"}
TIMES = {"created_at", "expires_at", "password_changed_at", "started_at"}


def _col(name: str) -> sa.Column[object]:
    """A column as the models store it: UUIDs and UTC times alike on both backends."""
    if name in IDS:
        return sa.Column(name, sa.Uuid())
    if name in TIMES:
        return sa.Column(name, UTCDateTime(timezone=True))
    return sa.Column(name, sa.JSON() if name in ("payload", "result") else None)


TENANT_T = sa.Table(
    "tenant",
    META,
    *(_col(c) for c in ("id", "name", "language", "active", "created_at")),
)
USER_T = sa.Table(
    "app_user",
    META,
    *(
        _col(c)
        for c in (
            "id",
            "tenant_id",
            "email",
            "name",
            "role",
            "password_hash",
            "language",
            "active",
            "password_changed_at",
            "created_at",
        )
    ),
)
COMMAND_T = sa.Table(
    "command",
    META,
    *(
        _col(c)
        for c in (
            "id",
            "tenant_id",
            "type",
            "payload",
            "status",
            "expires_at",
            "created_at",
            "created_by",
        )
    ),
    _col("result"),
)
BROADCAST_COLUMNS = (
    "id",
    "tenant_id",
    "agent_broadcast_id",
    "group_name",
    "mode",
    "status",
    "started_at",
    "member_count",
    "last_event_seq",
    "triggered_by_user_id",
    "trigger_caller_number",
)


def _broadcast(agent_id: str, user: uuid.UUID | None = None, number: str | None = None) -> dict:
    return {
        "id": uuid.uuid4(),
        "tenant_id": TENANT,
        "agent_broadcast_id": agent_id,
        "group_name": "Brandschutz",
        "mode": 2,
        "status": "completed",
        "started_at": NOW,
        "member_count": 3,
        "last_event_seq": 0,
        "triggered_by_user_id": user,
        "trigger_caller_number": number,
    }


def _rows_before(conn: sa.Connection) -> None:
    conn.execute(
        sa.insert(TENANT_T).values(
            id=TENANT, name="Alt GmbH", language="de", active=True, created_at=NOW
        )
    )
    conn.execute(
        sa.insert(USER_T).values(
            id=USER,
            tenant_id=TENANT,
            email="a@alt.example",
            name="Anna",
            role="tenant_admin",
            password_hash="x",
            language="de",
            active=True,
            password_changed_at=NOW,
            created_at=NOW,
        )
    )
    # The website's trigger that ran: only its command's result names the broadcast.
    conn.execute(
        sa.insert(COMMAND_T).values(
            id=uuid.uuid4(),
            tenant_id=TENANT,
            type="triggerBroadcast",
            payload={},
            status="succeeded",
            expires_at=NOW,
            created_at=NOW,
            created_by=USER,
            result={"broadcastId": "agent-b-2"},
        )
    )
    broadcast = sa.Table("broadcast", sa.MetaData(), *(_col(c) for c in BROADCAST_COLUMNS))
    conn.execute(
        sa.insert(broadcast),
        [
            _broadcast("agent-b-1", number="+4930123"),  # a trigger call
            _broadcast("agent-b-2"),  # the website's, by its command
            _broadcast(f"command:{uuid.uuid4()}", user=USER),  # a lost trigger
            _broadcast("agent-b-4", number="0170"),  # a trigger call
        ],
    )


def _sources(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT agent_broadcast_id, trigger_source FROM broadcast"))
            return {str(r[0]).split(":")[0]: str(r[1]) for r in rows}
    finally:
        engine.dispose()


def _columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("broadcast")}
    finally:
        engine.dispose()


def _up_and_down(url: str) -> None:
    command.upgrade(alembic_config(url), BEFORE)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            _rows_before(conn)
    finally:
        engine.dispose()
    command.upgrade(alembic_config(url), "0011_trigger_source")
    assert _sources(url) == {
        "agent-b-1": "phone",
        "agent-b-2": "website",
        "command": "website",
        "agent-b-4": "phone",
    }
    engine = sa.create_engine(url)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE broadcast SET trigger_source = 'fax'"))
    finally:
        engine.dispose()
    command.downgrade(alembic_config(url), BEFORE)
    assert "trigger_source" not in _columns(url)
    assert len(_sources_count(url)) == 4  # the rows stay
    command.upgrade(alembic_config(url), "head")
    assert _sources(url)["agent-b-2"] == "website"


def _sources_count(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT id FROM broadcast")))
    finally:
        engine.dispose()


def test_sqlite_derives_how_each_broadcast_was_raised(tmp_path: Path) -> None:
    _up_and_down(f"sqlite:///{tmp_path / 'embedded.db'}")


def test_postgresql_derives_how_each_broadcast_was_raised() -> None:
    need_postgres()
    url = fresh_database("migration_trigger_source")
    try:
        _up_and_down(url)
    finally:
        drop_database(url)
