"""What a SIP datagram passes before it is parsed (issue 15, point 4): the pre-checks on
its head, the rate per source with its bounded tables, and the UDP transport that runs
them (on Linux's reader and on Windows' datagram endpoint), against loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edge_agent.sip import intake as intake_module
from edge_agent.sip import udp
from edge_agent.sip.intake import (
    MAX_HEAD,
    MAX_HEADER_LINES,
    MAX_LINE,
    STRANGER_BURST,
    STRANGER_RATE,
    STRANGERS_BURST,
    Intake,
    cost,
    precheck,
)
from edge_agent.sip.message import Request, Response, parse
from edge_agent.sip.transport import UdpTransport
from tests.agent.windows_fakes import as_on_windows
from tests.sip.flood import datagram

HOST = "127.0.0.1"
CORPUS = Path(__file__).parent / "corpus"
HEAD = (
    "OPTIONS sip:Rundruf@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}\r\n"
    "From: <sip:pbx@127.0.0.1>;tag=p{n}\r\nTo: <sip:Rundruf@127.0.0.1>\r\n"
    "Call-ID: intake-{n}\r\nCSeq: 1 OPTIONS\r\n"
)


def options(n: int = 1, extra: str = "", body: bytes = b"") -> bytes:
    """An OPTIONS with `extra` header lines (each ending in CRLF) and `body`."""
    head = HEAD.format(n=n) + extra + f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# --- the pre-checks ----------------------------------------------------------------------


def corpus() -> list[Path]:
    found = sorted(CORPUS.glob("*.sip")) + sorted((CORPUS / "rfc4475" / "valid").glob("*.dat"))
    assert found
    return found


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_every_real_and_every_valid_torture_message_passes_the_prechecks(path: Path) -> None:
    assert precheck(path.read_bytes()) is None


def head_of(size: int) -> bytes:
    """An OPTIONS whose head (up to the empty line) is `size` bytes, in lines of 4 KB."""
    filler, left = "", size - len(options()) + len("\r\n\r\n")
    while left > 0:
        take = min(left, 4000)
        filler += "X-H: " + "h" * max(0, take - len("X-H: \r\n")) + "\r\n"
        left -= take
    data = options(extra=filler)
    assert data.index(b"\r\n\r\n") == size
    return data


def test_a_head_at_each_bound_passes_and_one_beyond_it_is_refused() -> None:
    header_lines = 6  # Via, From, To, Call-ID, CSeq, Content-Length
    at_count = "X-N: 1\r\n" * (MAX_HEADER_LINES - header_lines)
    assert precheck(options(extra=at_count)) is None
    assert precheck(options(extra=at_count + "X-N: 1\r\n")) == "header-lines"
    folded = "X-F: 1\r\n" + " 2\r\n" * (MAX_HEADER_LINES - header_lines)  # folding counts
    assert precheck(options(extra=folded)) == "header-lines"

    line = "X-L: " + "a" * (MAX_LINE - len("X-L: ")) + "\r\n"  # MAX_LINE and its CR
    assert precheck(options(extra=line.replace("a", "", 1))) is None
    assert precheck(options(extra=line)) == "line-length"

    assert precheck(head_of(MAX_HEAD)) is None
    assert precheck(head_of(MAX_HEAD + 1)) == "head-size"


def test_a_small_head_with_a_large_body_passes() -> None:
    assert precheck(options(body=b"v" * 60_000)) is None  # bodies are never header-parsed
    assert precheck(datagram("body", 65_000, 1, (HOST, 5060))) is None
    # The flood's own shape, with its head cut to the bound: too many lines.
    flood = datagram("headers", 65_000, 1, (HOST, 5060))
    assert precheck(flood[:MAX_HEAD] + b"\r\n\r\n") == "header-lines"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "start-line"),
        (b"\x00\x01\x02" * 1000, "start-line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "start-line"),
        (b"INVITE sip:x@y SIP/2.0" + b" " * MAX_LINE + b"\r\n\r\n", "start-line"),
        (b"OPTIONS sip:x@y SIP/2.0\r\n" + b"X: y\r\n" * 20_000, "head-size"),
        (datagram("headers", 65_000, 1, (HOST, 5060)), "head-size"),
    ],
    ids=["empty", "binary", "http", "start-line-too-long", "no-end-of-head", "flood"],
)
def test_what_cannot_be_sip_or_is_out_of_bounds_is_refused_before_parsing(
    data: bytes, why: str
) -> None:
    assert precheck(data) == why


def test_the_version_and_the_rest_are_left_to_the_parser() -> None:
    # RFC 4475 3.1.2.13 (badvers) wants 505, which only the parser's caller can send.
    assert precheck(b"OPTIONS sip:t@example.org SIP/7.0\r\nVia: x\r\n\r\n") is None
    assert precheck(b"SIP/2.0 200 OK\r\n\r\n") is None
    assert precheck(b"OPTIONS sip:x@y SIP/2.0\r\nno blank line") is None


def test_the_cost_is_one_token_and_one_per_kib() -> None:
    assert cost(b"x" * 1023) == 1
    assert cost(b"x" * 1024) == 2
    assert cost(b"x" * 65_000) == 64


# --- the rate per source -----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_stranger_gets_its_burst_then_its_rate(clock: Clock) -> None:
    intake = Intake(clock=clock)
    stranger = ("192.0.2.7", 5060)
    admitted = sum(intake.admit(options(n), stranger) for n in range(1000))
    assert admitted == STRANGER_BURST
    clock.now += 10.0
    admitted = sum(intake.admit(options(n), stranger) for n in range(1000))
    assert admitted == STRANGER_BURST  # refilled up to the burst, no more
    clock.now += 0.5
    assert sum(intake.admit(options(n), stranger) for n in range(1000)) == STRANGER_RATE / 2
    assert intake.dropped["rate-source"] == 3000 - 2 * STRANGER_BURST - STRANGER_RATE / 2


def test_another_port_of_the_same_host_shares_its_bucket(clock: Clock) -> None:
    intake = Intake(clock=clock)
    admitted = sum(intake.admit(options(n), ("192.0.2.7", 1024 + n)) for n in range(1000))
    assert admitted == STRANGER_BURST


def test_large_datagrams_cost_more(clock: Clock) -> None:
    intake = Intake(clock=clock)
    big = options(body=b"v" * 30_000)
    assert cost(big) == 30
    assert sum(intake.admit(big, ("192.0.2.7", 5060)) for _ in range(100)) == 4  # of 128


def test_known_peers_are_never_limited_by_rate(clock: Clock) -> None:
    intake = Intake(clock=clock)
    pbx, phone, stranger = ("192.0.2.1", 5060), ("192.0.2.2", 5062), ("192.0.2.2", 5999)
    intake.trust(pbx)
    intake.sent_request(phone)
    assert all(intake.admit(options(n), pbx) for n in range(5000))
    assert all(intake.admit(options(n), phone) for n in range(5000))
    # The phone's host on another port is a stranger: only that exact address is known.
    assert sum(intake.admit(options(n), stranger) for n in range(1000)) == STRANGER_BURST
    # Known for KNOWN_FOR_S after the last request we sent; trusted for good.
    clock.now += intake.known_for_s + 1
    assert not intake.is_known(phone) and intake.is_known(pbx)
    intake.sent_request(phone)
    assert intake.is_known(phone)
    # The pre-checks hold for everyone.
    assert not intake.admit(datagram("headers", 65_000, 1, (HOST, 5060)), pbx)
    assert intake.dropped["head-size"] == 1


def test_a_spray_of_source_addresses_grows_no_table_and_is_bounded_as_a_whole(
    clock: Clock,
) -> None:
    intake = Intake(clock=clock, max_sources=100, max_known=50)
    admitted = 0
    for n in range(20_000):
        source = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 5060)
        admitted += intake.admit(options(n), source)
    assert intake.sources == 100
    assert admitted == STRANGERS_BURST  # every host had a fresh bucket: the shared one held
    assert intake.dropped["rate-strangers"] == 20_000 - STRANGERS_BURST
    for n in range(1000):
        intake.sent_request((f"10.9.{n >> 8}.{n & 255}", 5060))
    assert intake.known == 50  # the most recent ones
    assert intake.is_known(("10.9.3.231", 5060)) and not intake.is_known(("10.9.0.0", 5060))


def test_drops_are_counted_by_reason_and_logged_at_most_every_ten_seconds(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_agent.sip.intake")
    intake = Intake(clock=clock)
    for n in range(500):
        intake.admit(b"\x00junk", ("192.0.2.9", n))  # its burst passes the rate, not the checks
        intake.admit(options(n), ("192.0.2.8", 5060))
    intake.malformed(("192.0.2.8", 5060), "missing Call-ID")
    assert len(caplog.records) == 1  # the first drop
    clock.now += intake_module.LOG_EVERY_S
    intake.admit(b"\x00junk", ("192.0.2.9", 1))
    assert len(caplog.records) == 2
    burst = int(STRANGER_BURST)
    assert dict(intake.dropped) == {
        "start-line": burst + 1,
        "rate-source": 2 * (500 - burst),
        "malformed": 1,
    }
    text = caplog.records[-1].getMessage()
    total = sum(intake.dropped.values())
    assert f"dropped {total - 1} datagrams since the last report ({total} in all" in text
    assert "192.0.2.9:1: start-line" in text


# --- the UDP transport -------------------------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def peer(sockets: list[socket.socket]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    sockets.append(sock)
    return sock


async def answers_to(sock: socket.socket, wait_s: float = 0.3) -> list[bytes]:
    """What `sock` receives until nothing more comes for `wait_s` (the loop runs)."""
    got: list[bytes] = []
    quiet = 0.0
    while quiet < wait_s:
        try:
            got.append(sock.recv(65536))
            quiet = 0.0
        except BlockingIOError:
            await asyncio.sleep(0.01)
            quiet += 0.01
    return got


@pytest.fixture(params=["linux", "windows"])
async def transport(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[UdpTransport, list[Request | Response]]]:
    if request.param == "windows":
        as_on_windows(monkeypatch)
    received: list[Request | Response] = []
    sip = await UdpTransport.listen(HOST, 0, lambda m, s, t: received.append(m))
    assert sip._udp.via_endpoint is (request.param == "windows")
    yield sip, received
    sip.close()


async def settle(sip: UdpTransport, count: int) -> None:
    for _ in range(300):
        if sip.intake.admitted + sum(sip.intake.dropped.values()) >= count:
            return
        await asyncio.sleep(0.01)


async def test_the_transport_refuses_a_strangers_flood_and_hears_its_known_peer(
    transport: tuple[UdpTransport, list[Request | Response]], sockets: list[socket.socket]
) -> None:
    sip, received = transport
    pbx, stranger = peer(sockets), peer(sockets)
    to = (HOST, sip.local[1])
    sip.send(parse(options(0)), pbx.getsockname())  # a request to it: a known peer
    for n in range(40):  # the first two take the stranger's whole burst
        stranger.sendto(datagram("headers", 65_000, n, to), to)
        await asyncio.sleep(0.001)  # read as it comes: no receive buffer runs over
    bad = options(1).replace(b"Call-ID: intake-1", b"Call-ID: intake 1")
    for n in range(100):
        pbx.sendto(options(2000 + n), to)
        stranger.sendto(bad, to)
    await settle(sip, 240)

    assert sip.intake.dropped["head-size"] == 2
    assert sip.intake.dropped["rate-source"] >= 38 + 90
    assert [m.call_id for m in received] == [f"intake-{2000 + n}" for n in range(100)]
    # What the rate refused is not answered; the few that got through get their 400.
    answers = await answers_to(stranger)
    assert len(answers) == sip.intake.dropped["malformed"] <= 10
    assert all(a.startswith(b"SIP/2.0 400 ") for a in answers)


async def test_a_malformed_message_is_still_answered_400_but_logged_with_the_others(
    transport: tuple[UdpTransport, list[Request | Response]],
    sockets: list[socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "edge_agent.sip")
    sip, received = transport
    phone = peer(sockets)
    to = (HOST, sip.local[1])
    bad = options(1).replace(b"Call-ID: intake-1", b"Call-ID: intake 1")
    for _ in range(20):
        phone.sendto(bad, to)
    answers = await answers_to(phone)
    assert len(answers) == 20
    assert all(a.startswith(b"SIP/2.0 400 Bad Request") for a in answers)
    assert received == []
    assert sip.intake.dropped["malformed"] == 20
    logged = [r for r in caplog.records if r.name == "edge_agent.sip.intake"]
    assert len(logged) == 1


# --- the work per loop pass --------------------------------------------------------------


async def test_a_drain_stops_once_its_time_budget_is_spent(sockets: list[socket.socket]) -> None:
    handled: list[bytes] = []

    def slow(data: bytes, source: tuple[str, int]) -> None:
        handled.append(data)
        time.sleep(0.0015)  # the parse work this stands for

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((HOST, 0))
    reader = udp.UdpSocket(sock, slow, batch=16, budget_s=0.002)
    try:
        sender = peer(sockets)
        for n in range(16):
            sender.sendto(b"%d" % n, sock.getsockname())
        for _ in range(100):  # the loop reads them all, in several passes
            if len(handled) == 16:
                break
            await asyncio.sleep(0.01)
        assert len(handled) == 16
        handled.clear()
        for n in range(16):
            sender.sendto(b"%d" % n, sock.getsockname())
        time.sleep(0.05)  # noqa: ASYNC251 -- queued in the kernel, not read yet
        reader._drain(16)
        assert len(handled) == 2  # 3 ms spent after two: the rest waits for the next pass
    finally:
        reader.close()
