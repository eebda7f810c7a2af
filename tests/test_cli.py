"""The `rundruf` command as a user runs it: real processes, real sockets."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.fernet import Fernet
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)

from tests.conftest import drop_database, fresh_database, need_postgres

ROOT = Path(__file__).resolve().parent.parent
RUNDRUF = [sys.executable, "-m", "api.cli"]


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _demo_once(cwd: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNDRUF, "demo", "--once", "--port", str(port), *extra],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_demo_runs_on_sqlite_and_prints_working_logins(tmp_path: Path):
    port = _free_port()
    result = _demo_once(tmp_path, port)
    assert result.returncode == 0, result.stderr
    assert "tenant_admin" in result.stdout
    # The story ran through the API, the real agent and the simulator.
    assert "agent connected" in result.stdout
    assert "Brandschutzhelfer       20 Teilnehmer" in result.stdout
    assert "Agent 'Rundruf Brandschutzhelfer'  Rufnummer" in result.stdout
    assert re.search(r"PIN \d{6}", result.stdout)
    # The alarm: a trigger call, each call live, the table, every reachable member reached.
    assert re.search(r"Trigger call: 100 \(Pforte\) → \d+, PIN \d{6}", result.stdout)
    assert re.search(r"Anna Müller \(\d+\) +Versuch 1: bestätigt", result.stdout)
    assert re.search(r"Anna Müller \(\d+\) +CONFIRMED +1 ", result.stdout)
    assert "15 of 20 members reachable (the others are logged off or away); 15 confirmed" in (
        result.stdout
    )
    # The worker and its SMTP sink: the demo stops the agent, the watchdog's mail arrives,
    # saying that the installation is the simulator.
    assert (
        "✉ mail to it@demo-gmbh.example: Rundruf-Störung: Rundruf Manager Service meldet sich "
        "nicht (Demo GmbH, Simulator)"
    ) in result.stdout
    assert (tmp_path / "rundruf.db").exists()
    key = tmp_path / ".rundruf" / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # A second run reuses the database and key and still works.
    again = _demo_once(tmp_path, port)
    assert again.returncode == 0, again.stderr


def test_the_demo_places_real_sip_calls_through_sipp(tmp_path: Path):
    from tests.sip.bed import need_sipp

    need_sipp()
    result = _demo_once(tmp_path, _free_port(), "--pbx", "sip")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIP: the agent calls through SIPp as the PBX" in result.stdout
    assert "20 of 20 called members confirmed" in result.stdout


def test_serve_on_postgresql_serves_the_committed_schema(tmp_path: Path):
    need_postgres()
    url = fresh_database("serve")
    port = _free_port()
    env = _env(
        RUNDRUF_DATABASE_URL=url,
        RUNDRUF_SECRET_KEY=Fernet.generate_key().decode(),
        RUNDRUF_PORT=str(port),
    )
    try:
        refused = subprocess.run(
            [*RUNDRUF, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert refused.returncode == 2
        assert "rundruf db upgrade" in refused.stderr

        subprocess.run([*RUNDRUF, "db", "upgrade"], env=env, check=True, timeout=120)
        created = subprocess.run(
            [
                *RUNDRUF,
                "admin",
                "create-platform-admin",
                "--email",
                "ops@example.org",
                "--password",
                "a long enough password",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        server = subprocess.Popen([*RUNDRUF, "serve"], env=env, stderr=subprocess.PIPE)
        try:
            endpoint = f"http://127.0.0.1:{port}/graphql"
            deadline = time.monotonic() + 30
            while True:
                try:
                    introspection = _post(endpoint, get_introspection_query(specified_by_url=True))
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert server.poll() is None, server.stderr.read().decode()
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.2)
            served = build_client_schema(introspection["data"])
            committed = build_schema((ROOT / "schema" / "schema.graphql").read_text())
            assert print_schema(lexicographic_sort_schema(served)) == print_schema(
                lexicographic_sort_schema(committed)
            )
            login = _post(
                endpoint,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) "
                "{ user { role } } }",
                {"e": "ops@example.org", "p": "a long enough password"},
            )
            assert login["data"]["login"]["user"]["role"] == "PLATFORM_ADMIN"
        finally:
            server.terminate()
            server.wait(timeout=20)
            server.stderr.close()
    finally:
        drop_database(url)
