"""The SIP dialer against real SIP peers on loopback: SIPp scenarios as members and as
the PBX's registrar, baresip as a phone that answers and records what it hears."""

from __future__ import annotations

import asyncio
import math
import socket
import wave
from array import array
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.dialer.port import CallEventKind, CallOutcome, CallRequest
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip.dtmf_info import dtmf_from_info
from edge_agent.sip.message import Headers, Request
from edge_agent.sip.transport import bad_request
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import DialerContract, Recorder, assert_well_formed
from tests.agent.registrar import Answer, registered, scripted_registrar
from tests.sip.bed import Baresip, SippUas, free_sip_port, need_baresip, need_pcap_play, need_sipp

K = CallEventKind


def tone_wav(path: Path, seconds: float = 1.0, frequency: float = 440.0) -> Path:
    samples = array(
        "h",
        (
            int(12000 * math.sin(2 * math.pi * frequency * n / 8000))
            for n in range(int(seconds * 8000))
        ),
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.tobytes())
    return path


@pytest.fixture
def announcement(tmp_path: Path) -> Path:
    return tone_wav(tmp_path / "announcement.wav")


@pytest.fixture
async def dialer() -> AsyncIterator[SipDialer]:
    need_sipp()
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, proxy=False)
    yield dialer
    await dialer.close()


def call_request(
    target: str, announcement: Path, call_id: str = "c1", **fields: Any
) -> CallRequest:
    """A call from "Rundruf" to a SIPp member (its URI, sip: or not)."""
    return CallRequest(
        call_id=call_id,
        target=target.removeprefix("sip:"),
        display_name="Rundruf",
        announcement=announcement,
        **fields,
    )


async def dial(dialer: SipDialer, target: str, announcement: Path, **fields: Any) -> Recorder:
    fields.setdefault("ring_timeout_s", 10.0)
    fields.setdefault("dtmf_timeout_s", 3.0)
    request = call_request(target, announcement, **fields)
    recorder = Recorder()
    outcome = await asyncio.wait_for(dialer.call(request, recorder), 60)
    assert_well_formed(recorder.events, outcome, request)
    return recorder


def ended(recorder: Recorder) -> tuple[CallOutcome | None, str | None]:
    return recorder.events[-1].outcome, recorder.events[-1].detail


async def test_a_member_who_presses_1_by_sip_info_confirms(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_dtmf_info.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement)
        assert member.wait(10) == 0, member.log()
    assert recorder.kinds == [
        K.STARTED,
        K.RINGING,
        K.ANSWERED,
        K.PLAYING,
        K.DTMF,
        K.CONFIRMED,
        K.ENDED,
    ]
    assert recorder.first(K.DTMF).digit == "1"
    assert ended(recorder)[0] is CallOutcome.CONFIRMED


async def test_a_member_who_presses_1_as_rfc4733_event_confirms(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    need_pcap_play()
    with SippUas("uas_dtmf_rfc4733.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement)
        assert member.wait(10) == 0, member.log()
    assert ended(recorder)[0] is CallOutcome.CONFIRMED
    assert recorder.first(K.DTMF).digit == "1"


async def test_a_busy_member_is_busy(dialer: SipDialer, announcement: Path, tmp_path: Path) -> None:
    with SippUas("uas_busy.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement)
        assert member.wait(10) == 0, member.log()
    assert ended(recorder) == (CallOutcome.BUSY, "busy")
    assert K.ANSWERED not in recorder.kinds


async def test_nobody_answering_is_cancelled_at_the_ring_timeout(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_no_answer.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement, ring_timeout_s=1.5)
        assert member.wait(10) == 0, member.log()
        assert "> 487" in member.flow() and "< CANCEL" in member.flow()
    assert ended(recorder)[0] is CallOutcome.NO_ANSWER
    assert K.RINGING in recorder.kinds


async def test_a_challenged_invite_is_sent_again_with_credentials(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_auth.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement, dtmf_timeout_s=0.5)
        assert member.wait(10) == 0, member.log()
        invites = member.find("INVITE ")
    assert len(invites) == 2 and "Authorization: Digest" in invites[1]
    assert ended(recorder)[0] is CallOutcome.ANSWERED


async def test_a_call_challenged_by_a_proxy_and_then_by_the_pbx_answers_both(
    announcement: Path,
) -> None:
    # RFC 3261 22.3: an outbound proxy (407) and the PBX behind it (401) may each ask.
    def script(request: Request) -> Answer:
        if "Proxy-Authorization" not in request.headers:
            challenge = 'Digest realm="proxy", nonce="p1", algorithm=MD5'
            return 407, "Proxy Authentication Required", [("Proxy-Authenticate", challenge)]
        if "Authorization" not in request.headers:
            challenge = 'Digest realm="pbx", nonce="r1", algorithm=MD5'
            return 401, "Unauthorized", [("WWW-Authenticate", challenge)]
        return 486, "Busy Here", []

    async with scripted_registrar(script) as pbx:
        account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", pbx.port), register=False)
        dialer = SipDialer(account)
        try:
            recorder = await dial(dialer, "member", announcement)
        finally:
            await dialer.close()
    invites = [r for r in pbx.received if r.method == "INVITE"]
    assert len(invites) == 3
    assert ended(recorder)[0] is CallOutcome.BUSY


async def test_a_member_hanging_up_early_is_answered_not_confirmed(
    dialer: SipDialer, tmp_path: Path
) -> None:
    long = tone_wav(tmp_path / "long.wav", seconds=4)
    with SippUas("uas_early_bye.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, long)
        assert member.wait(10) == 0, member.log()
    assert ended(recorder) == (CallOutcome.ANSWERED, "hung up without confirming")


async def test_a_bye_that_requires_an_extension_still_ends_the_call(
    dialer: SipDialer, tmp_path: Path
) -> None:
    """A BYE with `Require: x-foo` is answered 200 and ends the call (RFC 3261 15.1.1:
    its sender has ended the session already). Before, it got 420 and the agent
    played on into the dead call until the confirmation timed out."""
    long = tone_wav(tmp_path / "long.wav", seconds=4)
    with SippUas("uas_bye_require.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, long)
        assert member.wait(10) == 0, member.log()
    assert ended(recorder) == (CallOutcome.ANSWERED, "hung up without confirming")


async def test_an_alarm_asks_the_phone_to_answer_by_itself(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_busy.xml", tmp_path) as member:
        await dial(dialer, member.uri, announcement, priority=True)
        member.wait(10)
        invite = member.find("INVITE ")[0]
    for header in ("Alert-Info:", "Call-Info:", "Answer-Mode: Auto", "Priority: emergency"):
        assert header in invite


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
async def test_the_dialer_registers_at_the_pbx_with_a_digest(
    tmp_path: Path, algorithm: str
) -> None:
    need_sipp()
    with SippUas("uas_register.xml", tmp_path, keys={"algorithm": algorithm}) as pbx:
        account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", pbx.port))
        dialer = SipDialer(account)
        try:
            await dialer.start()
            assert dialer.ua is not None
            await registered(dialer)
        finally:
            await dialer.close()
        registers = pbx.find("REGISTER ")
    assert len(registers) >= 2
    assert f"algorithm={algorithm}" in registers[1] or f'algorithm="{algorithm}"' in registers[1]


async def test_a_phone_hears_exactly_the_announcement(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    need_baresip()
    with Baresip(tmp_path) as phone:
        recorder = await dial(dialer, phone.uri, announcement, dtmf_timeout_s=1.0)
        await asyncio.sleep(0.5)
        recordings = phone.recordings()
    assert ended(recorder)[0] is CallOutcome.ANSWERED
    assert recordings, "baresip recorded nothing"
    heard = _samples(recordings[0])
    sent = _samples(announcement)
    assert _best_correlation(sent, heard) > 0.99


def _samples(path: Path) -> list[int]:
    with wave.open(str(path), "rb") as w:
        data = array("h")
        data.frombytes(w.readframes(w.getnframes()))
        if w.getnchannels() == 2:
            data = data[::2]
    return list(data)


def _best_correlation(sent: list[int], heard: list[int]) -> float:
    """The highest normalised correlation of `sent` with `heard` over the first second's lags,
    on the overlap (the phone may stop recording a few packets before the end)."""
    best = 0.0
    for lag in range(0, min(8000, len(heard))):
        n = min(len(sent), len(heard) - lag)
        if n < 0.9 * len(sent):
            break
        a, b = sent[:n], heard[lag : lag + n]
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)) or 1.0
        best = max(best, dot / norm)
        if best > 0.999:
            break
    return best


def test_the_sip_port_helper_gives_a_free_port() -> None:
    assert 1024 < free_sip_port() < 65536


class TestSipDialerContract(DialerContract):
    """The same contract as the simulated dialer, against SIPp members."""

    RING_TIMEOUT_S = 2.0
    PARALLEL_CALLS = 50

    @pytest.fixture
    async def dialer(self) -> AsyncIterator[SipDialer]:
        need_sipp()
        account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
        dialer = SipDialer(account, proxy=False)
        yield dialer
        await dialer.close()

    @pytest.fixture
    def confirming_target(self, tmp_path: Path) -> Iterator[str]:
        with SippUas("uas_dtmf_info.xml", tmp_path, calls=1000) as member:
            yield member.uri.removeprefix("sip:")

    @pytest.fixture
    def unanswered_target(self, tmp_path: Path) -> Iterator[str]:
        with SippUas("uas_no_answer.xml", tmp_path, calls=100) as member:
            yield member.uri.removeprefix("sip:")


async def test_a_call_over_tcp_reaches_the_member(announcement: Path, tmp_path: Path) -> None:
    need_sipp()
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, proxy=False, transport="TCP")
    try:
        with SippUas("uas_busy.xml", tmp_path, transport="tcp") as member:
            recorder = await dial(dialer, member.uri.split(";")[0], announcement)
            assert member.wait(10) == 0, member.log()
    finally:
        await dialer.close()
    assert ended(recorder) == (CallOutcome.BUSY, "busy")


async def test_malformed_messages_are_answered_400_or_505_or_dropped_and_calls_go_on(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    await dialer.start()
    assert dialer.ua is not None
    port = dialer.ua.transport.local[1]
    corpus = sorted((Path(__file__).parent.parent / "sip_unit" / "corpus" / "malformed").iterdir())
    assert len(corpus) >= 25
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setblocking(False)
        probe.bind(("127.0.0.1", 0))
        answered = 0
        for path in corpus:
            probe.sendto(path.read_bytes()[:65000], ("127.0.0.1", port))
            try:
                reply = await asyncio.wait_for(loop.sock_recv(probe, 65536), 0.3)
            except TimeoutError:
                continue  # dropped: responses, ACKs and junk are never answered
            # 505 to another SIP version (RFC 3261 21.5.7), 400 to everything else.
            status = b"SIP/2.0 505 " if path.name == "bad_version.sip" else b"SIP/2.0 400 "
            assert reply.startswith(status), (path.name, reply[:80])
            answered += 1
    # Each malformed request that names Via, From, To, Call-ID and CSeq gets its 400.
    assert answered == sum(1 for p in corpus if bad_request(p.read_bytes()[:65000], "x"))
    assert answered >= 20
    # The dialer is unharmed: the next call works.
    with SippUas("uas_busy.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement)
    assert ended(recorder) == (CallOutcome.BUSY, "busy")


async def test_a_member_who_answers_and_listens_is_answered_not_confirmed(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_answer.xml", tmp_path, rtp_echo=True) as member:
        recorder = await dial(dialer, member.uri, announcement, dtmf_timeout_s=0.5)
        assert member.wait(10) == 0, member.log()
        assert member.flow()[-2:] == ["< BYE", "> 200"]
    assert ended(recorder) == (CallOutcome.ANSWERED, "no confirmation within 0.5 s")
    assert recorder.kinds == [K.STARTED, K.RINGING, K.ANSWERED, K.PLAYING, K.ENDED]


async def test_options_and_stray_requests_get_plain_answers(dialer: SipDialer) -> None:
    await dialer.start()
    assert dialer.ua is not None
    port = dialer.ua.transport.local[1]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setblocking(False)
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
        for method, expected in (
            ("OPTIONS", b"SIP/2.0 200 "),
            ("BYE", b"SIP/2.0 481 "),
            ("INVITE", b"SIP/2.0 603 "),
            ("PUBLISH", b"SIP/2.0 405 "),
        ):
            request = (
                f"{method} sip:Rundruf@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{method}\r\n"
                "From: <sip:pbx@127.0.0.1>;tag=1\r\nTo: <sip:Rundruf@127.0.0.1>\r\n"
                f"Call-ID: {method}@test\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            )
            probe.sendto(request.encode(), ("127.0.0.1", port))
            reply = await asyncio.wait_for(loop.sock_recv(probe, 65536), 2)
            assert reply.startswith(expected), (method, reply[:60])
            if method == "OPTIONS":
                assert b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO" in reply


async def test_a_call_stopped_while_ringing_cancels_the_invite(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_no_answer.xml", tmp_path) as member:
        request = call_request(member.uri, announcement, "stop-me", ring_timeout_s=60)
        recorder = Recorder()
        task = asyncio.create_task(dialer.call(request, recorder))
        await asyncio.wait_for(recorder.wait_for(K.RINGING), 10)
        task.cancel()  # the quorum was reached, say
        with pytest.raises(asyncio.CancelledError):
            await task
        # The CANCEL goes on in the background: the loop must keep running meanwhile.
        assert await asyncio.to_thread(member.wait, 10) == 0, member.log()
        assert "< CANCEL" in member.flow() and "< ACK" in member.flow()
    assert recorder.events[-1].detail == "cancelled"


async def test_a_confirmed_call_is_hung_up_with_one_bye(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    with SippUas("uas_dtmf_info.xml", tmp_path) as member:
        await dial(dialer, member.uri, announcement)
        assert member.wait(10) == 0, member.log()
        await asyncio.sleep(0.3)
        assert member.flow().count("< BYE") == 1


@pytest.mark.parametrize(
    ("kind", "body", "digit"),
    [
        ("application/dtmf-relay", "Signal=1\r\nDuration=160", "1"),
        ("application/dtmf-relay", "Signal=10\r\nDuration=160", "*"),
        ("application/dtmf-relay", "Signal=11", "#"),
        ("application/dtmf-relay", "Signal=#", "#"),
        ("application/dtmf", "11", "#"),
        ("application/dtmf", "9", "9"),
        ("application/dtmf", "1x", None),
        ("text/plain", "1", None),
    ],
)
def test_sip_info_digits_are_read_whole(kind: str, body: str, digit: str | None) -> None:
    headers = Headers([("Content-Type", kind)])
    assert dtmf_from_info(Request("INFO", "sip:a@b", headers, body.encode())) == digit


async def test_hundreds_of_answers_at_once_are_all_read(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    # Every member answering at the same moment: the socket must not drop answers
    # (which would show as INVITEs sent again after T1, and as members not reached).
    calls = 250
    with SippUas("uas_answer.xml", tmp_path, calls=calls) as member:
        target = member.uri.removeprefix("sip:")
        requests = [
            CallRequest(
                call_id=f"c{n}", target=target, display_name="Rundruf", announcement=announcement
            )
            for n in range(calls)
        ]
        outcomes = await asyncio.gather(*(dialer.call(r, Recorder()) for r in requests))
        assert await asyncio.to_thread(member.wait, 30) == 0, member.log()
        flow = member.flow()
    assert outcomes == [CallOutcome.ANSWERED] * calls
    assert flow.count("< INVITE") == calls, "an INVITE was retransmitted: an answer was lost"


async def test_every_invite_of_a_fan_out_leaves_before_any_event_is_taken(
    announcement: Path,
) -> None:
    """A slow event sink (the journal's disk, say) must not hold back the next INVITE."""
    pbx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx.bind(("127.0.0.1", 0))
    pbx.setblocking(False)
    account = Account("Rundruf", "secret", "127.0.0.1", pbx.getsockname(), register=False)
    dialer = SipDialer(account, proxy=True)
    gate = asyncio.Event()
    taken: list[CallEventKind] = []

    async def slow_sink(event: Any) -> None:
        await gate.wait()
        taken.append(event.kind)

    calls = [
        asyncio.create_task(
            dialer.call(
                CallRequest(f"fan-{n}", f"{100 + n}", "Rundruf", announcement, ring_timeout_s=30),
                slow_sink,
            )
        )
        for n in range(20)
    ]
    invites: set[bytes] = set()
    try:
        async with asyncio.timeout(10):
            while len(invites) < 20:
                try:
                    data = pbx.recv(65536)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                if data.startswith(b"INVITE "):
                    invites.add(data.split(b"\r\n", 1)[0])
        assert taken == []  # every INVITE was out while the first STARTED still waited
        assert len(invites) == 20
    finally:
        gate.set()
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await dialer.close()
        pbx.close()
