"""Error texts that leave the agent name no secret (issue 14, point 5).

Each test plants a secret where a failure can see it (the simulator's state, a
command's secrets, PowerShell's answer, the server URL) and reads the text the
agent would send.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from edge_agent.cache import LocalCache
from edge_agent.commands import Commands
from edge_agent.error_text import describe, redact, safe_url
from edge_agent.errors import ServerUnreachable
from edge_agent.pbx.errors import PbxError
from edge_agent.pbx.sim import SimControl, SimPbx
from edge_agent.pbx.sim_state import StateFile
from edge_agent.pbx.swyx import SwyxPbx
from edge_agent.pbx.swyx_runner import PowerShellRunner, RunnerError
from edge_agent.server import graphql

PBX_PASSWORD = "Pbx-Geheimnis-8841"
PIN = "90817263"
SIP_PASSWORD = "Sip-Geheimnis-5512"


class NoServer:
    async def download_audio(self, audio_id: str, sha256: str) -> bytes:
        raise AssertionError("no download expected")


def damaged_state(path: Path) -> None:
    """A state file with the password and a PIN in it that is no longer UTF-8."""
    control = SimControl(path)
    control.create(admin_password=PBX_PASSWORD)
    agent = control.add_user("Rundruf Agent", callrouting_only=True)
    data = json.loads(path.read_text(encoding="utf-8"))
    next(u for u in data["users"] if u["id"] == agent)["agent_pin"] = PIN
    path.write_bytes(json.dumps(data).encode() + b"\xff")


def test_a_damaged_state_file_is_named_without_its_content(tmp_path):
    damaged_state(tmp_path / "sim.json")
    with pytest.raises(PbxError) as caught:
        StateFile(tmp_path / "sim.json").read()
    message = caught.value.message
    assert PBX_PASSWORD not in message and PIN not in message
    assert "is damaged: UnicodeDecodeError: invalid start byte at position" in message


async def test_a_command_on_a_damaged_simulator_fails_without_its_secrets(tmp_path):
    control = SimControl(tmp_path / "sim.json")
    control.create(admin_password=PBX_PASSWORD)
    commands = Commands(SimPbx(tmp_path / "sim.json"), LocalCache(tmp_path / "state"), NoServer())  # type: ignore[arg-type]
    verify = {"host": "swyx.local", "adminUser": "admin"}
    assert (await commands.run("verifyPbxCredentials", verify, {"adminPassword": PBX_PASSWORD})).ok
    damaged_state(tmp_path / "fresh.json")
    (tmp_path / "sim.json").write_bytes((tmp_path / "fresh.json").read_bytes())
    for kind, payload, secrets in [
        ("syncDirectory", {}, {}),
        ("createGroup", {"name": "Nachtschicht"}, {}),
        ("verifyPbxCredentials", verify, {"adminPassword": PBX_PASSWORD}),
    ]:
        outcome = await commands.run(kind, payload, secrets)
        assert not outcome.ok and outcome.error
        assert PBX_PASSWORD not in outcome.error and PIN not in outcome.error, outcome.error


async def test_a_malformed_command_names_the_error_not_the_values(tmp_path):
    commands = Commands(
        SimPbx(tmp_path / "sim.json"),
        LocalCache(tmp_path / "state"),
        NoServer(),  # type: ignore[arg-type]
    )

    async def decodes(payload: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
        blob = json.dumps({"password": secrets["adminPassword"]}).encode() + b"\xff"
        return {"text": blob.decode()}

    async def echoes(payload: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"bad value {secrets['pin']}")

    commands.handlers["decodes"], commands.handlers["echoes"] = decodes, echoes
    decoded = await commands.run("decodes", {}, {"adminPassword": PBX_PASSWORD})
    assert decoded.error is not None and PBX_PASSWORD not in decoded.error
    assert decoded.error.startswith("malformed decodes command: UnicodeDecodeError: ")
    echoed = await commands.run("echoes", {}, {"pin": PIN})
    assert echoed.error == "malformed echoes command: ValueError: bad value ***"


def test_a_validation_error_is_described_without_its_input():
    class Login(BaseModel):
        port: int

    with pytest.raises(ValidationError) as caught:
        Login(port=PBX_PASSWORD)  # type: ignore[arg-type]
    assert PBX_PASSWORD in str(caught.value)  # what the plain text would have said
    text = describe(caught.value)
    assert PBX_PASSWORD not in text
    assert text.startswith("ValidationError: port: Input should be a valid integer")


def test_redact_hides_a_pin_only_where_it_stands_alone():
    assert redact("PIN 4711, number 247110, 4711", ["4711"]) == "PIN ***, number 247110, ***"
    assert redact("pw Pbx-Geheimnis", ["Pbx-Geheimnis", None, ""]) == "pw ***"


def test_a_url_in_an_error_loses_its_login_and_query():
    url = "https://rundruf:" + PBX_PASSWORD + "@[::1]:8443/graphql?token=abc#x"
    assert safe_url(url) == "https://[::1]:8443/graphql"


async def test_an_unreachable_server_is_named_without_the_login_in_its_url():
    port = _closed_port()
    url = f"http://rundruf:{PBX_PASSWORD}@127.0.0.1:{port}/graphql?token={PIN}"
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(ServerUnreachable) as caught:
            await graphql(client, url, "{ x }", {}, token=None)
    text = str(caught.value)
    assert PBX_PASSWORD not in text and PIN not in text
    assert text.startswith(f"http://127.0.0.1:{port}/graphql: ConnectError")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoingPowerShell(PowerShellRunner):
    """PowerShell that fails and repeats what it got, as an error record's text may."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.password = ""

    def set_login(self, host: str, user: str, password: str) -> None:
        self.password = password

    async def run(self, script: str, params_json: str, *, seconds: float) -> str:
        echo = f"-ParamsJson {params_json} -Password {self.password}"
        if self.how == "stderr":
            raise RunnerError(f"PowerShell ended with code 1: {echo}", unreachable=False)
        if self.how == "unreachable":
            raise RunnerError(f"WinRM failed: {echo}")
        if self.how == "refusal":
            return json.dumps({"ok": False, "kind": "refused", "message": echo})
        if self.how == "login":
            return json.dumps({"ok": False, "kind": "login", "message": echo})
        return f"no JSON here {echo}"


@pytest.mark.parametrize("how", ["stderr", "unreachable", "refusal", "login", "garbage"])
async def test_powershell_failures_reach_the_server_without_passwords_or_pins(how):
    pbx = SwyxPbx(EchoingPowerShell(how), dialer_login=("rundruf", SIP_PASSWORD))
    with pytest.raises(PbxError) as login:
        await pbx.login("swyx01", r"FIRMA\admin", PBX_PASSWORD)
    pbx._server = "swyx01"  # logged in, as if the login had worked
    with pytest.raises(PbxError) as pin:
        await pbx.set_agent_pin("1001", PIN)
    with pytest.raises(PbxError) as sip:
        await pbx.enable_user_login("1000", "rundruf", SIP_PASSWORD)
    for caught in (login, pin, sip):
        message = caught.value.message
        for secret in (PBX_PASSWORD, PIN, SIP_PASSWORD):
            assert secret not in message, message
            assert secret not in str(caught.value)
        assert "***" in message


# --- review of point 5: escaped forms, and hiding before cutting ------------------------

ODD_PASSWORD = 'Pä"ss\\Geheim<1>'
ODD_PIN = "9081"


@pytest.mark.parametrize("how", ["stderr", "unreachable", "refusal", "login", "garbage"])
async def test_a_password_with_umlaut_quote_and_backslash_is_hidden_as_json_writes_it(how):
    # The script's parameters travel as ASCII JSON: PowerShell echoes P\u00e4\"ss\\…
    pbx = SwyxPbx(EchoingPowerShell(how), dialer_login=("rundruf", ODD_PASSWORD))
    pbx._server = "swyx01"
    with pytest.raises(PbxError) as sip:
        await pbx.enable_user_login("1000", "rundruf", ODD_PASSWORD)
    assert "Geheim" not in sip.value.message, sip.value.message


def test_redact_finds_every_json_form_of_a_value():
    for value in (ODD_PASSWORD, "Kennwört-ä", ODD_PIN):
        once = json.dumps(value)[1:-1]
        texts = [
            json.dumps({"p": value}),
            json.dumps({"p": value}, ensure_ascii=False),
            json.dumps({"x": json.dumps({"p": value})}),
            json.dumps({"x": json.dumps({"p": value}, ensure_ascii=False)}),
            once.upper(),  # \u00E4 as some JSON writers put it
            repr({"p": value}),
        ]
        for text in texts:
            redacted = redact(text, [value])
            assert value not in redacted and once not in redacted, (text, redacted)
            assert "Geheim" not in redacted and "9081" not in redacted, (text, redacted)


def test_an_outcome_is_redacted_before_it_is_cut():
    from edge_agent.ledger import Outcome
    from edge_agent.outcomes import ERROR_MAX, storable

    error = "x" * (ERROR_MAX - 5) + f" {PBX_PASSWORD}"
    stored = storable(Outcome(False, {}, error), hide=[PBX_PASSWORD])
    assert stored.error is not None and len(stored.error) <= ERROR_MAX
    assert PBX_PASSWORD[:4] not in stored.error


def test_a_registration_error_hides_the_sip_password_before_it_is_cut():
    from datetime import UTC, datetime

    from edge_agent.sip.registration import DETAIL_MAX, error_of

    exc = OSError("x" * (DETAIL_MAX - 6) + f" {SIP_PASSWORD}")
    error = error_of(exc, datetime.now(UTC), hide=[SIP_PASSWORD])
    assert SIP_PASSWORD[:4] not in error.detail, error.detail


def test_a_call_detail_hides_the_agents_secrets_before_it_is_cut():
    from datetime import UTC, datetime

    from edge_agent.broadcast.model import Event
    from edge_agent.broadcast.reporter import MAX_DETAIL, event_json

    detail = "x" * (MAX_DETAIL - 6) + f" {SIP_PASSWORD}"
    event = Event(1, "u1", 1, "ended", datetime.now(UTC), outcome="failed", detail=detail)
    sent = event_json(event, {}, hide=[SIP_PASSWORD])
    assert SIP_PASSWORD[:4] not in sent["detail"], sent["detail"]


FAILING_POWERSHELL = """
import json, sys
request = json.loads(sys.stdin.buffer.read().decode("ascii"))
params = json.loads(request["params"])
secret = str(params.get("password") or params.get("pin") or "")
# A failure whose text puts the secret across the runner's old cut at 500 characters.
sys.stderr.write("x" * 495 + secret)
sys.exit(1)
"""


async def test_powershells_words_are_redacted_before_they_are_cut(tmp_path):
    import sys

    from edge_agent.pbx.swyx_runner import LocalPowerShell, local_command

    program = tmp_path / "failing_powershell.py"
    program.write_text(FAILING_POWERSHELL, encoding="utf-8")
    runner = LocalPowerShell([sys.executable, str(program), *local_command()[1:]])
    pbx = SwyxPbx(runner, dialer_login=("rundruf", SIP_PASSWORD))
    pbx._server = "swyx01"
    with pytest.raises(PbxError) as sip:
        await pbx.enable_user_login("1000", "rundruf", SIP_PASSWORD)
    assert SIP_PASSWORD[:4] not in sip.value.message, sip.value.message[-40:]


def test_a_frame_that_is_not_json_is_logged_without_its_content():
    from edge_agent import channel

    raw = '{"type": "next", "payload": {"secrets": {"pin": "' + PIN + '"}'  # cut off
    try:
        json.loads(raw)
    except ValueError as exc:
        logged = channel.bad_frame(raw, exc)
    assert PIN not in logged and str(len(raw)) in logged, logged
