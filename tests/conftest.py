"""Fixtures: a real PostgreSQL database, the app over ASGI, and two tenants.

Tests that need PostgreSQL skip when it is down on a developer machine, and
fail when RUNDRUF_REQUIRE_SERVICES=1 (as `make test` and CI set it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from api.app import create_app
from api.bootstrap import bootstrap
from api.migrate import upgrade
from api.runtime import Runtime
from api.settings import Settings, load_settings

PG_URL = os.environ.get(
    "RUNDRUF_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/rundruf_test"
)
REQUIRE = os.environ.get("RUNDRUF_REQUIRE_SERVICES") == "1"
SECRET_KEY = Fernet.generate_key().decode()


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _server_and_name(url: str) -> tuple[str, str]:
    server, _, dbname = _plain_pg_url(url).rpartition("/")
    return server, dbname


def postgres_available() -> bool:
    server, _ = _server_and_name(PG_URL)
    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def need_postgres() -> None:
    if not postgres_available():
        if REQUIRE:
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_URL}")
        pytest.skip("PostgreSQL is not running")


def fresh_database(suffix: str) -> str:
    """A new empty database beside the configured one, so parallel runs never collide."""
    server, base = _server_and_name(PG_URL)
    name = f"{base}_{suffix}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL.rpartition("/")[0] + "/" + name


def drop_database(url: str) -> None:
    server, name = _server_and_name(url)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


_SESSION_DB: list[str] = []


def make_settings(**overrides: Any) -> Settings:
    """Settings on this test session's own database (after `migrated_db` made it)."""
    url = _SESSION_DB[0] if _SESSION_DB else PG_URL
    values: dict[str, Any] = {"database_url": url, "secret_key": SECRET_KEY}
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def migrated_db() -> Iterator[str]:
    need_postgres()
    url = fresh_database(f"s{os.getpid()}")
    _SESSION_DB.append(url)
    upgrade(make_settings())
    yield url
    _SESSION_DB.clear()
    drop_database(url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rt(migrated_db: str, clock: Clock) -> AsyncIterator[Runtime]:
    base = bootstrap(make_settings())
    runtime = Runtime(settings=base.settings, db=base.db, box=base.box, clock=clock)
    yield runtime
    async with runtime.db.transaction() as session:
        tables = await session.execute(
            text(
                "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        )
        await session.execute(text(f"TRUNCATE {tables.scalar_one()} CASCADE"))
    await runtime.db.dispose()


@pytest.fixture
async def client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(rt), client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


@dataclass
class GraphQL:
    """Posts GraphQL documents as a given bearer token (or none)."""

    client: httpx.AsyncClient
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self(query, **variables)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def as_(self, token: str | None) -> GraphQL:
        return GraphQL(self.client, token, self.headers)


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQL:
    return GraphQL(client)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_env_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The service reads RUNDRUF_* settings; a developer's shell must not change tests.
    for name in list(os.environ):
        if name.startswith("RUNDRUF_") and not name.startswith(
            ("RUNDRUF_TEST_", "RUNDRUF_REQUIRE")
        ):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
async def world(rt: Runtime) -> Any:
    from tests.world import build_world

    return await build_world(rt)
