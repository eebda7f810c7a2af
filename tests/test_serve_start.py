"""`rundruf serve` started before PostgreSQL: it waits and says so; a refusal that
waiting cannot change stops it at once (api/db_wait.py)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from api.db_wait import pauses, worth_waiting
from tests.conftest import PG_URL, drop_database, fresh_database, need_postgres
from tests.processes import RUNDRUF, Balancer, Server, clean_env, free_port

PASSWORD = "pw-s3cret-never-logged"  # the test PostgreSQL trusts loopback; it ignores this


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    need_postgres()
    url = fresh_database(f"start{os.getpid()}")
    env = clean_env(RUNDRUF_DATABASE_URL=url, RUNDRUF_SECRET_KEY=Fernet.generate_key().decode())
    subprocess.run([*RUNDRUF, "db", "upgrade"], env=env, check=True, timeout=120)
    yield url
    drop_database(url)


def _url_at(url: str, port: int, database: str | None = None) -> str:
    name = database or url.rpartition("/")[2]
    return f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/{name}"


def _env(url: str) -> dict[str, str]:
    return clean_env(
        RUNDRUF_DATABASE_URL=url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_COOKIE_SECURE="false",
    )


def test_it_waits_for_a_database_that_comes_up_later_and_then_serves(
    database: str, tmp_path: Path
) -> None:
    pg_port = int(PG_URL.rpartition(":")[2].partition("/")[0])
    late_port = free_port()  # nothing listens here until the proxy below starts
    proxies: list[Balancer] = []
    # PostgreSQL "comes up" 4 s after serve started: a proxy to the real one on that port.
    timer = threading.Timer(4.0, lambda: proxies.append(Balancer([pg_port], port=late_port)))
    timer.start()
    server = Server(_env(_url_at(database, late_port)))
    started = time.monotonic()
    try:
        server.start(tmp_path)
        assert time.monotonic() - started >= 4
        assert server.log is not None
        log = server.log.read_text()
        assert f"waiting for the database at 127.0.0.1:{late_port} (attempt 1, next in 1 s)" in log
        assert "(attempt 2, next in 2 s)" in log
        assert "Connection refused" in log
        assert PASSWORD not in log
    finally:
        timer.cancel()
        timer.join()
        server.stop()
        for proxy in proxies:
            proxy.close()


def test_it_stops_at_once_when_the_database_refuses_for_good(database: str) -> None:
    pg_port = int(PG_URL.rpartition(":")[2].partition("/")[0])
    env = _env(_url_at(database, pg_port, "no_such_rundruf_database"))
    started = time.monotonic()
    refused = subprocess.run(
        [*RUNDRUF, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert time.monotonic() - started < 30
    assert refused.returncode == 2, refused.stderr
    assert f"the database at 127.0.0.1:{pg_port} refuses the connection" in refused.stderr
    assert 'database "no_such_rundruf_database" does not exist' in refused.stderr
    assert "waiting for the database" not in refused.stderr
    assert PASSWORD not in refused.stderr


def test_its_pauses_double_from_one_second_up_to_thirty() -> None:
    made = pauses()
    assert [next(made) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


@pytest.mark.parametrize(
    ("message", "wait"),
    [
        ('connection to server at "127.0.0.1", port 5999 failed: Connection refused', True),
        ("failed to resolve host 'db.example': [Errno -2] Name or service not known", True),
        ("connection to server at 10.0.0.9, port 5432 failed: timeout expired", True),
        ("... failed: FATAL:  the database system is starting up", True),
        ('... failed: FATAL:  password authentication failed for user "rundruf"', False),
        ('... failed: FATAL:  role "nobody" does not exist', False),
    ],
)
def test_it_waits_only_for_what_passes_by_itself(message: str, wait: bool) -> None:
    assert worth_waiting(message) is wait
