"""Register before the first alarm: a real `rundruf agent run` with the SIP dialer
registers at a SIPp registrar on loopback as soon as it starts (no call is ever placed)
and the central service shows what it reported; a refused registration shows failed
with the registrar's answer; a PBX name that never resolves holds up neither the
heartbeat nor the commands. Real `rundruf serve` on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_agent import config
from edge_agent.pbx import make_pbx
from edge_agent.service import AgentService
from edge_agent.settings import AgentSettings
from tests.processes import wait_until
from tests.sip.bed import SippUas, need_sipp
from tests.test_agent_e2e import Stack, new_site, stack, verify

__all__ = ["stack"]  # the module's server, database and platform admin

SHOWN = """query($t: ID) { installations(tenantId: $t) {
  pbxAdapter dialer simulated connected
  sipRegistration { state lastError { code params detail } }
} }"""


def sip_settings(port: int) -> dict[str, str]:
    return {
        "RUNDRUF_AGENT_DIALER": "sip",
        "RUNDRUF_AGENT_SIP_USER": "Rundruf",
        "RUNDRUF_AGENT_SIP_PASSWORD": "sip-secret",
        "RUNDRUF_AGENT_SIP_DOMAIN": "127.0.0.1",
        "RUNDRUF_AGENT_SIP_SERVER_HOST": "127.0.0.1",
        "RUNDRUF_AGENT_SIP_SERVER_PORT": str(port),
    }


def reported(stack: Stack, tenant_id: str, state: str) -> dict[str, Any] | None:
    [installation] = stack.platform(SHOWN, t=tenant_id)["installations"]
    registration = installation["sipRegistration"]
    return installation if registration and registration["state"] == state else None


def test_the_agent_registers_when_it_starts_and_reports_registered(
    stack: Stack, tmp_path: Path
) -> None:
    need_sipp()
    with SippUas("uas_register.xml", tmp_path) as pbx:
        site = new_site(stack, tmp_path, **sip_settings(pbx.port))
        try:
            shown = wait_until(
                lambda: reported(stack, site.tenant_id, "REGISTERED"), 30, "registered"
            )
            assert pbx.find("SIP/2.0 200"), pbx.log()
            assert not pbx.find("INVITE ")  # nobody was called: the registration came first
        finally:
            site.agent.stop()
    assert shown["pbxAdapter"] == "SIM" and shown["dialer"] == "SIP"
    assert shown["simulated"] is True and shown["connected"] is True
    assert shown["sipRegistration"]["lastError"] is None


def test_a_refused_registration_is_reported_failed_with_the_registrars_answer(
    stack: Stack, tmp_path: Path
) -> None:
    need_sipp()
    with SippUas("uas_register_forbidden.xml", tmp_path) as pbx:
        site = new_site(stack, tmp_path, **sip_settings(pbx.port))
        try:
            shown = wait_until(lambda: reported(stack, site.tenant_id, "FAILED"), 30, "failed")
        finally:
            site.agent.stop()
    error = shown["sipRegistration"]["lastError"]
    assert error["code"] == "refused"
    assert error["params"] == {"status": 403, "reason": "Forbidden"}
    assert "403 Forbidden" in error["detail"]


class InProcessAgent:
    """`rundruf agent run` in a thread of this process, so that a test can patch what the
    agent calls (here: the resolver); stopped by cancelling its task."""

    def __init__(self, env: dict[str, str]) -> None:
        prefix = "RUNDRUF_AGENT_"
        values = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
        self.settings = AgentSettings.model_validate(values)
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        service = AgentService(
            self.settings, config.load(self.settings.config_path), make_pbx(self.settings)
        )
        self._task = self._loop.create_task(service.run())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    def __enter__(self) -> InProcessAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wait_until(lambda: self._task is not None, 10, "the agent's task")
        assert self._task is not None
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the agent did not stop"


def test_a_pbx_name_that_never_resolves_holds_up_neither_heartbeat_nor_commands(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "pbx.hangs.test":
            release.wait(60)  # a resolver that does not answer (until the test ends)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    site = new_site(stack, tmp_path)  # enrolled; its own agent process is not the one tested
    site.agent.stop()
    settings = {**sip_settings(5060), "RUNDRUF_AGENT_SIP_SERVER_HOST": "pbx.hangs.test"}
    try:
        with InProcessAgent({**site.agent.env, **settings}):
            # The heartbeat goes out at start: it is the SIP agent's (dialer SIP).
            shown = wait_until(
                lambda: (
                    reported(stack, site.tenant_id, "REGISTERING")
                    or reported(stack, site.tenant_id, "FAILED")
                ),
                8,
                "a heartbeat while the PBX's name is being looked up",
            )
            assert shown["dialer"] == "SIP" and shown["connected"] is True
            verify(site)  # the command channel runs as well: a command completes
    finally:
        release.set()
