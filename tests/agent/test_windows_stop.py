"""How the Windows service host stops its children: it closes their standard input
(edge_agent/stopping.py, edge_agent/windows_service.py `stop_child`). The mechanism
is the same on Linux, so the real agent and job service are stopped so here."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.server import ServerConnection, serve

from edge_agent import stopping
from swyx_jobservice import exit_codes as jobservice_exit_codes
from tests.agent.test_windows_ops import service_module


async def test_the_work_is_cancelled_and_cleans_up_when_stdin_closes() -> None:
    read_end, write_end = os.pipe()
    cleaned: list[str] = []

    async def work() -> str:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("cleaned")
        return "never"

    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        running = asyncio.create_task(stopping.until_stdin_closes(work(), stdin))
        await asyncio.sleep(0.05)
        os.write(write_end, b"anything written before the end is ignored\n")
        await asyncio.sleep(0.05)
        assert not running.done()
        os.close(write_end)
        assert await asyncio.wait_for(running, 5) is None
    assert cleaned == ["cleaned"]


async def test_work_that_ends_by_itself_gives_its_result() -> None:
    read_end, write_end = os.pipe()

    async def work() -> int:
        return 7

    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        assert await stopping.until_stdin_closes(work(), stdin) == 7
    os.close(write_end)


async def test_a_cancellation_from_outside_is_not_taken_for_a_stop() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        running = asyncio.create_task(stopping.until_stdin_closes(asyncio.sleep(3600), stdin))
        await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    os.close(write_end)


def test_the_service_host_and_the_children_agree_on_the_flag() -> None:
    assert service_module().STOP_FLAG == stopping.FLAG


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def program_data(tmp_path: Path, kind: str, settings: dict[str, str]) -> dict[str, str]:
    """%ProgramData%\\Rundruf with `<kind>.env`; the environment the service host sees."""
    folder = tmp_path / "Rundruf"
    folder.mkdir(exist_ok=True)
    lines = [f"{key}={value}" for key, value in settings.items()]
    (folder / f"{kind}.env").write_text("\n".join(lines) + "\n", encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    environ["ProgramData"] = str(tmp_path)
    return environ


def test_the_job_service_stops_cleanly_when_the_service_closes_its_stdin(
    tmp_path: Path,
) -> None:
    module = service_module()
    port = free_port()
    environ = program_data(
        tmp_path,
        "jobservice",
        {
            "RUNDRUF_JOBSERVICE_PORT": str(port),
            "RUNDRUF_JOBSERVICE_DATA_DIR": "jobservice",
            "RUNDRUF_JOBSERVICE_AGENT_TOKEN": "agent-token-0123456789abcdef",
            "RUNDRUF_JOBSERVICE_ROUTING_TOKEN": "routing-token-0123456789abcdef",
        },
    )
    log = tmp_path / "jobservice.log"
    with open(log, "wb") as out:
        child = module.start_child("jobservice", out, environ)
        try:
            wait_for(lambda: listening(port) or child.poll() is not None)
            assert child.poll() is None, log.read_text()
            started = time.monotonic()
            code = module.stop_child(child, grace=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    text = log.read_text()
    assert code == 0, text
    assert time.monotonic() - started < 10  # stopped by itself, not ended hard
    assert "standard input closed: stopping" in text
    assert "Finished server process" in text  # uvicorn's clean end


def test_the_agent_stops_cleanly_when_the_service_closes_its_stdin(tmp_path: Path) -> None:
    module = service_module()
    environ = program_data(
        tmp_path,
        "agent",
        {
            "RUNDRUF_AGENT_PBX": "sim",
            "RUNDRUF_AGENT_DIALER": "sim",
            "RUNDRUF_AGENT_SIM_STATE": "agent/swyx-sim.json",
            "RUNDRUF_AGENT_LOG_LEVEL": "INFO",
        },
    )
    agent_dir = tmp_path / "Rundruf" / "agent"
    agent_dir.mkdir()
    enrolment = {"server": "http://127.0.0.1:9", "installationId": "i-1", "token": "t"}
    (agent_dir / "agent.json").write_text(json.dumps(enrolment), encoding="utf-8")
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        child = module.start_child("agent", out, environ)
        try:
            # Running: it keeps trying the (absent) server.
            wait_for(lambda: b"reconnecting" in log.read_bytes() or child.poll() is not None)
            assert child.poll() is None, log.read_text()
            code = module.stop_child(child, grace=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    text = log.read_text()
    assert code == 0, text
    assert "standard input closed: stopping" in text
    assert (agent_dir / "ledger.db").exists()


def test_a_child_that_ignores_its_stdin_is_ended_after_the_grace(tmp_path: Path) -> None:
    module = service_module()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        stdin=subprocess.PIPE,
    )
    started = time.monotonic()

    code = module.stop_child(child, grace=0.5)

    assert code != 0 and time.monotonic() - started < 10


# --- an exit for another reason keeps its code -----------------------------------------
# The thread that waits for standard input must not turn an exit into an abort at
# interpreter shutdown (SIGABRT, -6): the service host decides by the exit code whether
# a restart can help (PERMANENT_EXIT_CODES).


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A central service on loopback that refuses every agent as a revoked licence does:
    the GraphQL WebSocket closed with 4403 after the agent's connection_init."""

    def refuse(connection: ServerConnection) -> None:
        connection.recv(timeout=10)
        connection.close(4403, "licence revoked")

    with serve(refuse, "127.0.0.1", 0, subprotocols=["graphql-transport-ws"]) as server:
        runner = threading.Thread(target=server.serve_forever, daemon=True)
        runner.start()
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()
        runner.join(10)


def test_a_refused_agent_exits_3_while_its_stdin_is_still_open(
    tmp_path: Path, refusing_server: str
) -> None:
    module = service_module()
    environ = program_data(
        tmp_path,
        "agent",
        {
            "RUNDRUF_AGENT_PBX": "sim",
            "RUNDRUF_AGENT_DIALER": "sim",
            "RUNDRUF_AGENT_SIM_STATE": "sim.json",
        },
    )
    agent_dir = tmp_path / "Rundruf" / "agent"
    agent_dir.mkdir()
    enrolment = {"server": refusing_server, "installationId": "i-1", "token": "t"}
    (agent_dir / "agent.json").write_text(json.dumps(enrolment), encoding="utf-8")
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        child = module.start_child("agent", out, environ)
        try:
            code = child.wait(60)  # its standard input stays open all along
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            module.stop_child(child, 0)
    text = log.read_text()
    assert code == 3, text
    assert "enroll again" in text
    assert "Fatal Python error" not in text


def test_the_job_service_on_a_busy_port_exits_with_its_code_while_its_stdin_is_open(
    tmp_path: Path,
) -> None:
    module = service_module()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environ = program_data(
            tmp_path,
            "jobservice",
            {
                "RUNDRUF_JOBSERVICE_PORT": str(taken.getsockname()[1]),
                "RUNDRUF_JOBSERVICE_DATA_DIR": "jobservice",
                "RUNDRUF_JOBSERVICE_AGENT_TOKEN": "agent-token-0123456789abcdef",
                "RUNDRUF_JOBSERVICE_ROUTING_TOKEN": "routing-token-0123456789abcdef",
            },
        )
        log = tmp_path / "jobservice.log"
        with open(log, "wb") as out:
            child = module.start_child("jobservice", out, environ)
            try:
                code = child.wait(60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
                module.stop_child(child, 0)
    text = log.read_text()
    assert "Fatal Python error" not in text
    # Its own code for "cannot serve", which the service host retries later; not uvicorn's
    # 3, which means "enrol again" for the agent.
    assert code == jobservice_exit_codes.FAILED == 1, text
    assert "address already in use" in text
    assert "rundruf jobservice: cannot serve on 127.0.0.1:" in text
