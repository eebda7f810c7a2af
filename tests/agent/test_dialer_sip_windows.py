"""The SIP dialer the way it runs on Windows, over real SIP and RTP on loopback.

`as_on_windows` patches the platform checks: the loop counts as one without
``add_reader`` (Windows' proactor loop), so SIP and every call's RTP go through
asyncio datagram endpoints on the same sockets; the pacer is woken by its thread
alarm and holds the faked winmm's 1 ms timer while streams run; each socket gets
the WSAIoctl that keeps ICMP errors from stopping the proactor's reads. The peers
(SIPp, baresip) are real.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge_agent import platforms
from edge_agent.dialer.port import CallEventKind, CallOutcome, CallRequest
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip import alarms, transport, udp
from edge_agent.sip import call as call_module
from edge_agent.sip.alarms import ThreadAlarm
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import Recorder
from tests.agent.test_dialer_sip import _best_correlation, _samples, dial, ended, tone_wav
from tests.agent.windows_fakes import AsOnWindows, FakeWs2_32, as_on_windows
from tests.sip.bed import Baresip, SippUas, need_baresip, need_pcap_play, need_sipp

K = CallEventKind


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> AsOnWindows:
    return as_on_windows(monkeypatch)


@pytest.fixture
def announcement(tmp_path: Path) -> Path:
    return tone_wav(tmp_path / "announcement.wav")


@pytest.fixture
async def dialer(windows: AsOnWindows) -> AsyncIterator[SipDialer]:
    need_sipp()
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account, proxy=False)
    yield dialer
    await dialer.close()


def sip_socket(dialer: SipDialer) -> udp.UdpSocket:
    assert dialer.ua is not None
    return dialer.ua.transport._udp  # type: ignore[attr-defined,no-any-return]


async def test_a_call_confirmed_by_sip_info_runs_over_datagram_endpoints(
    dialer: SipDialer, announcement: Path, tmp_path: Path, windows: AsOnWindows
) -> None:
    with SippUas("uas_dtmf_info.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement)
        assert member.wait(10) == 0, member.log()

    assert ended(recorder)[0] is CallOutcome.CONFIRMED
    assert recorder.first(K.DTMF).digit == "1"
    assert sip_socket(dialer).via_endpoint
    assert isinstance(dialer.pacer._alarm, ThreadAlarm)
    # The SIP socket and the call's RTP socket, each with both ICMP reports off.
    codes = [code for _, code, off in windows.ws2_32.ioctls if off == 0]
    assert codes == [udp.SIO_UDP_CONNRESET, udp.SIO_UDP_NETRESET] * 2
    # The announcement played with the timer raised, and the pacer gave it back.
    assert windows.winmm.calls[:1] == [("begin", 1)]
    await asyncio.sleep(0.05)
    assert windows.winmm.raised() == 0


async def test_a_key_sent_as_rtp_event_is_read_from_the_endpoint(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    need_pcap_play()
    with SippUas("uas_dtmf_rfc4733.xml", tmp_path) as member:
        recorder = await dial(dialer, member.uri, announcement)
        assert member.wait(10) == 0, member.log()
    assert ended(recorder)[0] is CallOutcome.CONFIRMED
    assert recorder.first(K.DTMF).digit == "1"


async def test_a_phone_hears_exactly_the_announcement_paced_by_the_thread_alarm(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    need_baresip()
    with Baresip(tmp_path) as phone:
        recorder = await dial(dialer, phone.uri, announcement, dtmf_timeout_s=1.0)
        await asyncio.sleep(0.5)
        recordings = phone.recordings()
    assert ended(recorder)[0] is CallOutcome.ANSWERED
    assert recordings, "baresip recorded nothing"
    assert _best_correlation(_samples(announcement), _samples(recordings[0])) > 0.99


async def test_a_hundred_answers_at_once_are_all_read_from_the_endpoint(
    dialer: SipDialer, announcement: Path, tmp_path: Path
) -> None:
    calls = 100
    with SippUas("uas_answer.xml", tmp_path, calls=calls) as member:
        target = member.uri.removeprefix("sip:")
        requests = [
            CallRequest(f"w{n}", target, "Rundruf", announcement, dtmf_timeout_s=0.5)
            for n in range(calls)
        ]
        outcomes = await asyncio.gather(*(dialer.call(r, Recorder()) for r in requests))
        assert await asyncio.to_thread(member.wait, 30) == 0, member.log()
        flow = member.flow()
    assert outcomes == [CallOutcome.ANSWERED] * calls
    assert flow.count("< INVITE") == calls, "an INVITE was retransmitted: an answer was lost"


# --- the choice itself ------------------------------------------------------------


async def test_linuxs_loop_is_read_by_a_reader_and_a_loop_without_one_by_an_endpoint() -> None:
    loop = asyncio.get_running_loop()
    assert platforms.loop_has_readers(loop)
    # What Windows' proactor loop inherits: the abstract add_reader.
    without = asyncio.base_events.BaseEventLoop()
    try:
        assert not platforms.loop_has_readers(without)
    finally:
        without.close()


@pytest.mark.parametrize("when", ["before it is up", "after it is up"])
async def test_a_socket_closed_before_or_after_its_endpoint_is_up_is_closed(
    windows: AsOnWindows, when: str
) -> None:
    received: list[bytes] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    reader = udp.UdpSocket(sock, lambda data, _: received.append(data), batch=8)
    if when == "after it is up":
        await reader.ready()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"ping", sock.getsockname())
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.01)
        assert received == [b"ping"]

    reader.close()
    for _ in range(5):
        await asyncio.sleep(0)

    assert reader.via_endpoint
    assert sock.fileno() == -1


# --- the socket's own Windows calls ------------------------------------------------------


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_a_failed_wsaioctl_logs_the_wsa_error_not_its_return_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(udp, "_ws2_32", lambda: FakeWs2_32(error=10045))  # WSAEOPNOTSUPP

    with udp_socket() as sock, caplog.at_level(logging.WARNING, logger=udp.__name__):
        udp.ignore_icmp_errors(sock)

    assert [r.getMessage() for r in caplog.records] == [
        "WSAIoctl(0x9800000c) on a UDP socket failed: WSA error 10045",
        "WSAIoctl(0x9800000f) on a UDP socket failed: WSA error 10045",
    ]


@pytest.mark.parametrize(("load", "name"), [(udp._ws2_32, "ws2_32"), (alarms.winmm, "winmm")])
def test_windows_libraries_are_loaded_once(
    monkeypatch: pytest.MonkeyPatch, load: Any, name: str
) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(ctypes, "WinDLL", lambda n: loaded.append(n) or n, raising=False)
    load.cache_clear()
    try:
        assert [load(), load(), load()] == [name] * 3
    finally:
        load.cache_clear()

    assert loaded == [name]


def test_without_windows_the_libraries_are_an_error_not_a_guess() -> None:
    for load in (udp._ws2_32, alarms.winmm):
        load.cache_clear()
        with pytest.raises(OSError, match="is a part of Windows"):
            load()


async def test_each_use_reads_datagrams_as_large_as_it_needs(windows: AsOnWindows) -> None:
    """Windows' proactor keeps a receive buffer of max_size per socket: RTP needs 2 KiB,
    not the 64 KiB SIP may (500 calls: 1 MB instead of 32 MB)."""
    rtp = call_module._Media(SimpleNamespace(on_rtp=lambda *_: None), "127.0.0.1")  # type: ignore[arg-type]
    sip = await transport.UdpTransport.listen("127.0.0.1", 0, lambda *_: None)
    try:
        await rtp._udp.ready()
        assert rtp._udp._transport is not None and sip._udp._transport is not None
        assert rtp._udp._transport.max_size == call_module.RTP_MAX_BYTES == 2048  # type: ignore[attr-defined]
        assert sip._udp._transport.max_size == udp.MAX_DATAGRAM == 65536  # type: ignore[attr-defined]
    finally:
        rtp.close()
        sip.close()
    for _ in range(5):
        await asyncio.sleep(0)
