"""The Kamailio PBX of the SIP test bed (issue 16 point 4), proved with real peers: SIPp
members register with digest auth, a SIPp caller's calls go to the registered member
or, for an agent number, to the "Rundruf" registration with `Diversion`, and the
agent's own SIP dialer, registered as "Rundruf", reads members' dialog state (RFC 4235)
from Kamailio's presence modules while two of them are in a call through it."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.dialer.port import CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.ivr.port import CallerGone, CallerLine
from edge_agent.settings import AgentSettings
from edge_agent.sip.incoming import Accept, IncomingInvite
from edge_agent.sip.tls_context import TlsConfig
from tests.agent.registrar import registered
from tests.agent.test_dialer_sip import dial, ended, tone_wav
from tests.processes import wait_until
from tests.sip.bed import (
    HOST,
    Baresip,
    SippUac,
    SippUas,
    free_sip_port,
    need_baresip,
    need_sipp,
)
from tests.sip.kamailio import AGENT_USER, CALLER, Kamailio, need_kamailio
from tests.sip.sip_register import RegisterClient
from tests.sip.tls_bed import Authority


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Kamailio]:
    need_kamailio()
    need_sipp()
    with Kamailio(tmp_path) as kamailio:
        yield kamailio


def _call(pbx: Kamailio, tmp_path: Path, to: str, scenario: str = "kam_uac_call.xml") -> SippUac:
    """A SIPp caller, the extension CALLER with its password, calling `to` via Kamailio."""
    return SippUac(
        f"sip:{to}@{pbx.host}:{pbx.port}",
        tmp_path,
        scenario,
        auth=(CALLER, pbx.password(CALLER)),
        keys={"user": CALLER},
        timeout=30,
    )


def _register_sipp(pbx: Kamailio, tmp_path: Path, user: str, password: str, port: int) -> SippUac:
    """SIPp registering `user` from 127.0.0.1:`port` with `password`; ended."""
    with SippUac(
        f"{pbx.host}:{pbx.port}",
        tmp_path,
        "kam_uac_register.xml",
        port=port,
        auth=(user, password),
        keys={"user": user},
        timeout=10,
    ) as sipp:
        sipp.wait(20)
    return sipp


def test_a_member_registers_with_its_password_and_a_wrong_one_is_refused(
    pbx: Kamailio, tmp_path: Path
) -> None:
    right, wrong = free_sip_port(), free_sip_port()
    member = _register_sipp(pbx, tmp_path, "2001", pbx.password("2001"), right)
    intruder = _register_sipp(pbx, tmp_path, "2002", pbx.password("2002") + "x", wrong)

    assert member.process is not None and member.process.returncode == 0, member.log()
    assert member.flow() == ["> REGISTER", "< 401", "> REGISTER", "< 200"]
    assert 'Digest realm="127.0.0.1"' in member.find("SIP/2.0 401")[0]
    assert pbx.bindings("2001") == [f"sip:2001@127.0.0.1:{right};transport=UDP"]

    assert intruder.process is not None and intruder.process.returncode == 1
    # (SIPp then ends the failed "call" with a BYE of its own.)
    assert intruder.flow()[:4] == ["> REGISTER", "< 401", "> REGISTER", "< 403"]
    assert pbx.bindings("2002") == []
    # The fixture's own client, as the end-to-end tests register members with it.
    assert pbx.register("2003", "sip:2003@127.0.0.1:5", password="wrong").status == 403
    assert pbx.register("nobody", "sip:x@127.0.0.1:5", password="x").status == 403
    assert pbx.bindings("2003") == []
    # A member's own password does not register another's number.
    client = RegisterClient(pbx.address, pbx.domain)
    spoof = client.register("2004", pbx.password("2001"), "sip:2004@127.0.0.1:5", auth_user="2001")
    assert spoof.status == 403
    assert pbx.bindings("2004") == []


def test_a_call_to_an_extension_rings_the_member_registered_for_it(
    pbx: Kamailio, tmp_path: Path
) -> None:
    port = free_sip_port()
    assert _register_sipp(pbx, tmp_path, "2005", pbx.password("2005"), port).wait() == 0
    with SippUas("kam_uas_answer.xml", tmp_path, port=port, timeout=30) as member:
        with _call(pbx, tmp_path, "2005") as caller:
            assert caller.wait(30) == 0, caller.log() + pbx.log()
        assert member.wait(10) == 0, member.log()
    assert caller.flow() == [
        *("> INVITE", "< 407", "> ACK", "> INVITE"),
        *("< 100", "< 180", "< 200", "> ACK", "> BYE", "< 200"),
    ]
    assert member.flow() == ["< INVITE", "> 180", "> 200", "< ACK", "< BYE", "> 200"]
    invite = member.find("INVITE ")[0]
    # Kamailio sent it to the registered contact, stays in the call, and adds nothing
    # of an agent number's.
    assert invite.startswith(f"INVITE sip:2005@127.0.0.1:{port};transport=UDP SIP/2.0\r\n")
    assert f"\r\nRecord-Route: <sip:127.0.0.1:{pbx.port};lr" in invite
    assert re.search(r"\r\nFrom: <sip:1000@127\.0\.0\.1>;tag=", invite)
    assert "Diversion" not in invite and "Proxy-Authorization" not in invite


@pytest.mark.parametrize(("number", "status"), [("2006", 480), ("2999", 404)])
def test_a_call_nobody_is_registered_for_fails(
    pbx: Kamailio, tmp_path: Path, number: str, status: int
) -> None:
    """2006 is a user without a registration (480), 2999 no user at all (404)."""
    with _call(pbx, tmp_path, number) as caller:
        assert caller.wait(30) == 1
    assert caller.find(f"SIP/2.0 {status} "), caller.messages()


def test_a_call_to_the_agent_number_reaches_rundruf_with_the_number_in_diversion(
    pbx: Kamailio, tmp_path: Path
) -> None:
    with SippUas("kam_uas_answer.xml", tmp_path, timeout=30) as agent:
        pbx.register(AGENT_USER, f"sip:{AGENT_USER}@127.0.0.1:{agent.port}")
        with _call(pbx, tmp_path, "7000") as caller:
            assert caller.wait(30) == 0, caller.log() + pbx.log()
        assert agent.wait(10) == 0, agent.log()
    invite = agent.find("INVITE ")[0]
    assert invite.startswith(f"INVITE sip:{AGENT_USER}@127.0.0.1:{agent.port} SIP/2.0\r\n")
    assert "\r\nDiversion: <sip:7000@127.0.0.1>;reason=unconditional\r\n" in invite
    assert re.search(r"\r\nTo: <sip:7000@127\.0\.0\.1>\r\n", invite)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_the_agent_sees_two_members_in_a_call_busy_and_the_others_idle(
    pbx: Kamailio, tmp_path: Path, transport: str
) -> None:
    """The agent's SIP dialer, registered to Kamailio as "Rundruf", asks the members'
    dialog state the way test mode does ("only idle members")."""
    need_baresip()
    members = {"anna": CALLER, "ben": "2002", "carl": "2003", "dora": "2004"}
    dialer = SipDialer(pbx.agent_account(), transport=transport)
    with Baresip(tmp_path, user="2002") as phone:
        pbx.register("2002", phone.uri)
        try:
            await dialer.start()
            await registered(dialer)
            assert len(await asyncio.to_thread(pbx.bindings, AGENT_USER)) == 1
            before = await dialer.busy_members(members)

            # 1000 calls 2002 (baresip answers by itself) and stays until 2002 hangs up.
            with _call(pbx, tmp_path, "2002", scenario="kam_uac_call_until_bye.xml") as caller:
                for user in (CALLER, "2002"):
                    await asyncio.to_thread(pbx.wait_published, user, "confirmed")
                during = await dialer.busy_members(members)
                await asyncio.to_thread(phone.command, "hangup")
                assert await asyncio.to_thread(caller.wait, 30) == 0, caller.log()
            for user in (CALLER, "2002"):
                await asyncio.to_thread(pbx.wait_published, user, "terminated")
            after = await dialer.busy_members(members)
        finally:
            await dialer.close()
    assert before == {"anna": False, "ben": False, "carl": False, "dora": False}, pbx.log()
    assert during == {"anna": True, "ben": True, "carl": False, "dora": False}, pbx.log()
    assert after == {"anna": False, "ben": False, "carl": False, "dora": False}, pbx.log()
    # The closed dialer took its registration back.
    wait_until(lambda: pbx.bindings(AGENT_USER) == [], 10, "Rundruf de-registered")


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_the_agent_registered_as_rundruf_calls_a_member_through_kamailio(
    pbx: Kamailio, tmp_path: Path, transport: str
) -> None:
    """The agent's INVITE is challenged (407) like any user's, goes to the member's
    registration, and its BYE follows Kamailio's Record-Route."""
    account = pbx.agent_account()
    announcement = tone_wav(tmp_path / "announcement.wav")
    with SippUas("kam_uas_answer.xml", tmp_path, timeout=30) as member:
        pbx.register("2004", f"sip:2004@127.0.0.1:{member.port}")
        dialer = SipDialer(account, transport=transport)
        try:
            await dialer.start()
            await registered(dialer)
            agent = await asyncio.to_thread(pbx.bindings, AGENT_USER)
            recorder = await dial(dialer, "2004", announcement, dtmf_timeout_s=0.5)
        finally:
            await dialer.close()
        assert member.wait(10) == 0, member.log() + pbx.log()
    assert ended(recorder) == (CallOutcome.ANSWERED, "no confirmation within 0.5 s")
    assert member.flow() == ["< INVITE", "> 180", "> 200", "< ACK", "< BYE", "> 200"]
    invite = member.find("INVITE ")[0]
    assert re.search(r"\r\nFrom: \"Rundruf\" <sip:Rundruf@127\.0\.0\.1>;tag=", invite), invite
    assert len(agent) == 1 and agent[0].lower().endswith(f";transport={transport.lower()}")
    # Challenged first (407), then let through with the agent's credentials.
    assert pbx.log().count(f"<- INVITE sip:2004@127.0.0.1 from {transport.lower()}:") >= 2
    assert "refused" not in pbx.log()


def test_the_agent_settings_from_agent_env_name_this_kamailio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """agent_env() is what an agent process reads: its SIP settings point here."""
    pbx = Kamailio(tmp_path)  # not started: only its names and passwords
    for name, value in pbx.agent_env("TCP").items():
        monkeypatch.setenv(name, value)
    settings = AgentSettings(pbx="sim")  # type: ignore[call-arg]  # dialer: from the env
    assert settings.dialer == "sip" and settings.sip_transport == "TCP"
    assert (settings.sip_user, settings.sip_domain) == (AGENT_USER, pbx.domain)
    assert settings.sip_password.get_secret_value() == pbx.password(AGENT_USER)
    assert (settings.sip_server_host, settings.sip_server_port) == pbx.address


class _TriggerLine:
    """The agent's router for incoming calls: takes every call, keeps what it saw, and
    waits on the line until the caller hangs up."""

    def __init__(self) -> None:
        self.invites: list[IncomingInvite] = []
        self.caller_gone = asyncio.Event()

    def route(self, invite: IncomingInvite) -> Accept:
        self.invites.append(invite)
        return Accept(self._handle)

    async def _handle(self, line: CallerLine) -> None:
        try:
            await line.read_digits(1, 30, None)
        except CallerGone:
            self.caller_gone.set()


@pytest.mark.parametrize("transport", ["UDP", "TCP", "TLS"])
async def test_a_call_to_the_agent_number_reaches_the_agent_registered_as_rundruf(
    tmp_path: Path, transport: str
) -> None:
    """A caller dials 7000; Kamailio sends it to the agent's registration (over TLS
    along the connection the agent made), the agent sees 7000 from Diversion, and the
    caller's ACK and BYE find it through Kamailio's Record-Route."""
    need_kamailio()
    need_sipp()
    ca = Authority(tmp_path / "ca")
    with Kamailio(tmp_path, tls=ca.issue("kamailio", (HOST,))) as pbx:
        tls = TlsConfig(server_name=HOST, ca_file=ca.cert)
        dialer = SipDialer(pbx.agent_account(transport), transport=transport, tls=tls)
        trigger = _TriggerLine()
        dialer.answer_calls(trigger)
        try:
            await dialer.start()
            await registered(dialer)
            with _call(pbx, tmp_path, "7000") as caller:
                assert await asyncio.to_thread(caller.wait, 30) == 0, caller.log() + pbx.log()
            await asyncio.wait_for(trigger.caller_gone.wait(), 10)
        finally:
            await dialer.close()
        log = pbx.log()
    assert [(i.number, i.caller_number, i.transport) for i in trigger.invites] == [
        ("7000", CALLER, transport)
    ]
    assert caller.flow()[-4:] == ["< 200", "> ACK", "> BYE", "< 200"]
    proto = transport.lower()
    assert f"<- REGISTER sip:127.0.0.1 from {proto}:" in log


async def test_over_tls_the_agent_asks_dialog_state_and_calls_a_member(tmp_path: Path) -> None:
    """SIP over TLS from the agent: the NOTIFY and the member's answers come back over
    the agent's own connection (it listens for no TLS)."""
    need_kamailio()
    need_sipp()
    ca = Authority(tmp_path / "ca")
    announcement = tone_wav(tmp_path / "announcement.wav")
    with (
        Kamailio(tmp_path, tls=ca.issue("kamailio", (HOST,))) as pbx,
        SippUas("kam_uas_answer.xml", tmp_path, timeout=30) as member,
    ):
        pbx.register("2004", f"sip:2004@127.0.0.1:{member.port}")
        tls = TlsConfig(server_name=HOST, ca_file=ca.cert)
        dialer = SipDialer(pbx.agent_account("TLS"), transport="TLS", tls=tls)
        try:
            await dialer.start()
            await registered(dialer)
            states = await dialer.busy_members({"carl": "2003", "dora": "2004"})
            recorder = await dial(dialer, "2004", announcement, dtmf_timeout_s=0.5)
        finally:
            await dialer.close()
        assert member.wait(10) == 0, member.log() + pbx.log()
        log = pbx.log()
    assert states == {"carl": False, "dora": False}, log
    assert ended(recorder) == (CallOutcome.ANSWERED, "no confirmation within 0.5 s")
    assert member.flow() == ["< INVITE", "> 180", "> 200", "< ACK", "< BYE", "> 200"]
    for method in ("REGISTER", "SUBSCRIBE", "INVITE", "BYE"):
        assert re.search(rf"<- {method} \S+ from tls:", log), method


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("how", ["stop", "max_seconds"])
def test_kamailio_ends_with_all_its_processes(tmp_path: Path, how: str) -> None:
    """Leaving the `with` ends it, and one a test leaks ends by itself (`max_seconds`);
    either way none of its worker processes stays behind on the port."""
    need_kamailio()
    pbx = Kamailio(tmp_path, max_seconds=3 if how == "max_seconds" else 1800)
    with pbx:
        assert pbx.process is not None
        pgid = pbx.process.pid  # its own session: the group is Kamailio and its workers
        assert pbx.options() == 200
        if how == "max_seconds":
            pbx.process.wait(30)
    assert pbx.process.returncode is not None
    wait_until(lambda: _group_gone(pgid), 10, "Kamailio's processes gone")
    assert pbx.options() is None


async def test_members_behind_kamailio_confirm_the_agents_calls_by_sip_info(
    pbx: Kamailio, tmp_path: Path
) -> None:
    """One SIPp is two members (both registered with its address); each answers the
    agent's call and presses 1 by INFO, which reaches the agent through Kamailio."""
    announcement = tone_wav(tmp_path / "announcement.wav")
    with SippUas("kam_uas_dtmf_info.xml", tmp_path, calls=2, timeout=30) as members:
        for user in ("2006", "2007"):
            pbx.register(user, f"sip:{user}@127.0.0.1:{members.port}")
        dialer = SipDialer(pbx.agent_account())
        try:
            recorders = await asyncio.gather(
                *(dial(dialer, user, announcement, call_id=user) for user in ("2006", "2007"))
            )
        finally:
            await dialer.close()
        assert members.wait(10) == 0, members.log() + pbx.log()
    assert [ended(r)[0] for r in recorders] == [CallOutcome.CONFIRMED] * 2
    assert sorted(m.split(" ", 2)[1] for m in members.find("INVITE ")) == [
        f"sip:{user}@127.0.0.1:{members.port}" for user in ("2006", "2007")
    ]
    assert pbx.log().count("<- INFO ") >= 2
