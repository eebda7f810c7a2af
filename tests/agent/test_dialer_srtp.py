"""SRTP with SDES keys (issue 15, point 9) against real peers: baresip with its srtp
module records what it decrypted and presses a key, SIPp answers plain RTP to a
dialer that requires SRTP while the test listens on the port its answer names."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.dialer.port import CallEventKind, CallOutcome
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.srtp import Mode
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import Recorder, assert_well_formed
from tests.agent.test_dialer_sip import _best_correlation, _samples, call_request, tone_wav
from tests.agent.windows_fakes import as_on_windows
from tests.sip.bed import Baresip, RtpSink, SippUas, need_baresip, need_sipp

K = CallEventKind


@pytest.fixture
def announcement(tmp_path: Path) -> Path:
    return tone_wav(tmp_path / "announcement.wav", seconds=1.0)


@pytest.fixture
async def dialers() -> AsyncIterator[dict[Mode, SipDialer]]:
    """One dialer per SRTP mode, none registering anywhere (the members are called directly)."""
    made: dict[Mode, SipDialer] = {}
    for mode in ("off", "optional", "required"):
        account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
        made[mode] = SipDialer(account, proxy=False, srtp=mode)
    yield made
    for dialer in made.values():
        await dialer.close()


async def call_and_press(
    dialer: SipDialer, phone: Baresip, announcement: Path, target: str | None = None
) -> Recorder:
    """Calls baresip; once the announcement has played, baresip presses 1 (RFC 4733
    telephone-events, inside SRTP when the call is encrypted)."""
    request = call_request(
        target or phone.uri, announcement, ring_timeout_s=10.0, dtmf_timeout_s=6.0
    )
    recorder = Recorder()
    call = asyncio.create_task(asyncio.wait_for(dialer.call(request, recorder), 60))
    await asyncio.wait_for(recorder.wait_for(K.PLAYING), 15)
    await asyncio.sleep(1.5)  # the 1 s announcement, then the key
    answer = await asyncio.to_thread(phone.command, "sndcode", "1")
    assert '"ok":true' in answer, answer
    outcome = await call
    assert_well_formed(recorder.events, outcome, request)
    await asyncio.sleep(0.3)  # baresip closes its recording
    return recorder


def assert_heard(phone: Baresip, announcement: Path) -> None:
    recordings = phone.recordings()
    assert recordings, f"baresip recorded nothing:\n{phone.log()}"
    assert _best_correlation(_samples(announcement), _samples(recordings[0])) > 0.99


@pytest.mark.parametrize("platform", ["linux", "windows"])
async def test_srtp_required_a_phone_hears_exactly_the_announcement_and_confirms(
    dialers: dict[Mode, SipDialer],
    announcement: Path,
    tmp_path: Path,
    platform: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_baresip()
    if platform == "windows":  # RTP through asyncio endpoints, as on the proactor loop
        as_on_windows(monkeypatch)
    # srtp-mand: baresip takes RTP/SAVP with a key and nothing else, so what it records
    # is what it decrypted, and its key press reaches us only inside SRTP.
    with Baresip(tmp_path, mediaenc="srtp-mand") as phone:
        recorder = await call_and_press(dialers["required"], phone, announcement)
        log = phone.log()
        assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in log, log
        assert_heard(phone, announcement)
    assert recorder.first(K.DTMF).digit == "1"
    assert recorder.events[-1].outcome is CallOutcome.CONFIRMED


async def test_srtp_optional_encrypts_where_the_phone_can_and_stays_plain_where_not(
    dialers: dict[Mode, SipDialer], announcement: Path, tmp_path: Path
) -> None:
    need_baresip()
    with Baresip(tmp_path / "srtp", mediaenc="srtp") as phone:
        recorder = await call_and_press(dialers["optional"], phone, announcement)
        assert "SRTP is Enabled" in phone.log()
        assert_heard(phone, announcement)
    assert recorder.events[-1].outcome is CallOutcome.CONFIRMED
    with Baresip(tmp_path / "plain") as phone:
        recorder = await call_and_press(dialers["optional"], phone, announcement)
        assert "SRTP" not in phone.log()
        assert_heard(phone, announcement)
    assert recorder.events[-1].outcome is CallOutcome.CONFIRMED


async def test_a_phone_that_cannot_speak_srtp_refuses_the_required_offer(
    dialers: dict[Mode, SipDialer], announcement: Path, tmp_path: Path
) -> None:
    need_baresip()
    with Baresip(tmp_path) as phone:  # no srtp module: RTP/SAVP is no common format
        request = call_request(phone.uri, announcement, ring_timeout_s=10.0)
        recorder = Recorder()
        outcome = await asyncio.wait_for(dialers["required"].call(request, recorder), 30)
        assert not phone.recordings()
    assert_well_formed(recorder.events, outcome, request)
    assert (outcome, recorder.events[-1].detail) == (CallOutcome.FAILED, "488 Not Acceptable Here")
    assert K.ANSWERED not in recorder.kinds


async def test_srtp_required_and_a_plain_answer_end_the_call_without_a_plain_packet(
    dialers: dict[Mode, SipDialer],
    announcement: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    need_sipp()
    caplog.set_level(logging.DEBUG)
    # A PBX that answers RTP/AVP without a key (wrongly: the offer was RTP/SAVP). The
    # answer names the test's own socket as the member's RTP port.
    with (
        RtpSink() as member,
        SippUas("uas_answer_rtp_to.xml", tmp_path, keys={"rx_port": str(member.port)}) as pbx,
    ):
        request = call_request(pbx.uri, announcement, ring_timeout_s=10.0, dtmf_timeout_s=2.0)
        recorder = Recorder()
        outcome = await asyncio.wait_for(dialers["required"].call(request, recorder), 30)
        assert pbx.wait(10) == 0, pbx.log()
        await asyncio.sleep(0.5)  # anything sent late would have arrived by now
        invite = pbx.find("INVITE ")[0]
        assert pbx.flow()[-3:] == ["< ACK", "< BYE", "> 200"]
        assert member.packets == []
    assert_well_formed(recorder.events, outcome, request)
    assert " RTP/SAVP " in invite and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in invite
    key = invite.split(" inline:", 1)[1].split()[0]
    assert len(key) == 40 and key not in caplog.text  # what the agent logged of the call
    assert "srtpRequired" in caplog.text or "no usable key" in caplog.text
    assert (outcome, recorder.events[-1].detail) == (CallOutcome.FAILED, "srtpRequired")
    assert K.ANSWERED not in recorder.kinds and K.PLAYING not in recorder.kinds


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
@pytest.mark.parametrize("srtp", ["off", "optional", "required"])
async def test_srtp_over_plain_sip_is_warned_of_once_at_the_start(
    caplog: pytest.LogCaptureFixture, transport: str, srtp: Mode
) -> None:
    """SDES puts the SRTP keys into the SDP (RFC 4568): over UDP or TCP anyone on the path
    reads them, which the customer should hear of once, not per call (issue 15 point 9,
    the outside review's point 9). Over TLS no warning: tests/agent/test_dialer_sip_tls.py."""
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, transport=transport, proxy=False, srtp=srtp)
    caplog.set_level(logging.WARNING, logger="edge_agent.dialer.sip")
    try:
        await dialer.start()
        await dialer.start()  # started already: said once
    finally:
        await dialer.close()
    said = [r for r in caplog.records if "SRTP keys" in r.getMessage()]
    assert len(said) == (0 if srtp == "off" else 1), said
    if said:
        assert transport in said[0].getMessage() and "TLS" in said[0].getMessage()
