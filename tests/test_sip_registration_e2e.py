"""Register before the first alarm: a real `rundruf agent run` with the SIP dialer
registers at a SIPp registrar on loopback as soon as it starts (no call is ever placed)
and the central service shows what it reported; a refused registration shows failed
with the registrar's answer. Real `rundruf serve` on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.processes import wait_until
from tests.sip.bed import SippUas, need_sipp
from tests.test_agent_e2e import Stack, new_site, stack

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
