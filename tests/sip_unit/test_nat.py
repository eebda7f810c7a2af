"""RFC 3581 (issue 15, point 10): `received`/`rport` on the answers we give, our public
address learned from the registrar's, and the keep-alive, against loopback sockets.

The NAT itself, SIPp behind it and a whole call through it: tests/agent/test_sip_nat.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from edge_agent.dialer.sip import SipDialer
from edge_agent.sip import nat
from edge_agent.sip.message import Headers, Request, Response, parse, parse_via, response_to
from edge_agent.sip.transport import TcpTransport, Transport, UdpTransport
from edge_agent.sip.ua import Account, UserAgent

HOST = "127.0.0.1"


def request(via: str, method: str = "OPTIONS") -> Request:
    headers = Headers()
    headers.add("Via", via)
    headers.add("From", "<sip:pbx@example.net>;tag=p1")
    headers.add("To", "<sip:Rundruf@example.net>")
    headers.add("Call-ID", "nat-test@example.net")
    headers.add("CSeq", f"7 {method}")
    return Request(method, "sip:Rundruf@192.168.1.20:5060", headers)


def stamped(via: str, source: tuple[str, int]) -> str:
    answer = response_to(request(via), 200, "OK")
    nat.stamp_via(answer, source)
    return answer.headers.first_line("Via") or ""


# ------------------------------------------------------------------ the Via of our answers


def test_an_empty_rport_gets_the_source_port_and_received_the_source_ip() -> None:
    via = "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKa1;rport"
    assert stamped(via, ("198.51.100.9", 40123)) == (
        "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKa1;rport=40123;received=198.51.100.9"
    )


def test_with_rport_received_is_written_even_when_the_ip_is_the_via_host() -> None:
    # RFC 3581 4: "even if it is identical to the value of the sent-by component".
    via = "SIP/2.0/UDP 198.51.100.9:5060;rport;branch=z9hG4bKa2"
    assert stamped(via, ("198.51.100.9", 5060)) == (
        "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKa2;rport=5060;received=198.51.100.9"
    )


def test_without_rport_received_only_where_the_source_is_not_the_via_host() -> None:
    same = "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKa3"
    assert stamped(same, ("198.51.100.9", 40000)) == same  # RFC 3261 18.2.1
    other = "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKa3"
    assert stamped(other, ("198.51.100.9", 40000)) == other + ";received=198.51.100.9"
    named = "SIP/2.0/UDP pbx.example.net;branch=z9hG4bKa3"
    assert stamped(named, ("198.51.100.9", 5060)) == named + ";received=198.51.100.9"


def test_a_received_the_client_wrote_is_replaced_and_an_rport_with_a_value_kept() -> None:
    via = "SIP/2.0/UDP 10.0.0.7:5062;received=203.0.113.66;rport=1234;branch=z9hG4bKa4"
    assert stamped(via, ("198.51.100.9", 40123)) == (
        "SIP/2.0/UDP 10.0.0.7:5062;rport=1234;branch=z9hG4bKa4;received=198.51.100.9"
    )


def test_only_the_top_via_is_stamped_and_ipv6_is_written_bare() -> None:
    top = "SIP/2.0/UDP [2001:db8::7]:5060;rport;branch=z9hG4bKa5"
    incoming = request(f"{top}, SIP/2.0/TCP 10.9.9.9;rport")  # two values on one line
    incoming.headers.add("Via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1;rport")
    answer = response_to(incoming, 200, "OK")
    nat.stamp_via(answer, ("2001:db8::1:9", 7000))
    assert answer.headers.get_all("Via") == [
        "SIP/2.0/UDP [2001:db8::7]:5060;branch=z9hG4bKa5;rport=7000;received=2001:db8::1:9",
        "SIP/2.0/TCP 10.9.9.9;rport",  # the others as they were
        "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1;rport",
    ]
    assert parse_via(answer.headers.get("Via") or "").params["received"] == "2001:db8::1:9"
    assert parse(bytes(answer)) == answer  # still a well-formed message


# ------------------------------------------------------------------ what the registrar saw


def answer_with(via: str) -> Response:
    headers = Headers()
    headers.add("Via", via)
    return Response(200, "OK", headers)


LOCAL = ("192.168.1.20", 5060)
OURS = "SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKr1"


@pytest.mark.parametrize(
    ("params", "seen"),
    [
        (";received=203.0.113.7;rport=61000", ("203.0.113.7", 61000)),
        (";rport=61000", ("192.168.1.20", 61000)),  # a server that wrote no received
        (";received=203.0.113.7", ("203.0.113.7", 5060)),  # one that ignores rport
        (";rport", LOCAL),  # an RFC 3261 server: nothing was changed on the way
        ("", LOCAL),
        (";received=999.1.1.1;rport=61000", None),
        (";received=pbx.example.net;rport=61000", None),
        (";received=2001:db8::7;rport=61000", None),  # not our family
        (";received=0.0.0.0;rport=61000", None),
        (";received=203.0.113.7;rport=0", None),
        (";received=203.0.113.7;rport=70000", None),
        (";received=203.0.113.7;rport=\uff16\uff11\uff10\uff10\uff10", None),  # not ASCII
    ],
)
def test_the_registrars_view_of_us_is_read_defensively(
    params: str, seen: tuple[str, int] | None
) -> None:
    assert nat.seen_at(answer_with(OURS + params), LOCAL) == seen


def test_learned_keeps_what_it_knew_when_an_answer_says_nothing_readable() -> None:
    public = ("203.0.113.7", 61000)
    assert (
        nat.learned(answer_with(OURS + ";received=203.0.113.7;rport=61000"), LOCAL, None) == public
    )
    assert nat.learned(answer_with(OURS + ";received=bad;rport=1"), LOCAL, public) == public
    assert nat.learned(answer_with("nonsense"), LOCAL, public) == public
    assert (
        nat.learned(answer_with(OURS + ";rport=5060;received=192.168.1.20"), LOCAL, public) is None
    )


# ------------------------------------------------------------------ the user agent


class Peer:
    """A UDP socket on loopback: the PBX. `answer(request, source)` says what it sends
    back to a request; it keeps everything it got."""

    def __init__(self, answer: Callable[[Request, tuple[str, int]], Response | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.answer = answer
        self.requests: list[Request] = []
        self.responses: list[tuple[Response, tuple[str, int]]] = []
        self.raw: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            self.raw.append(data)
            if not data.strip(b"\r\n"):
                continue
            message = parse(data)
            if isinstance(message, Response):
                self.responses.append((message, source))
                continue
            self.requests.append(message)
            answer = self.answer(message, source)
            if answer is not None:
                self.sock.sendto(bytes(answer), source)

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def registrar(params: Callable[[tuple[str, int]], str]) -> Callable[..., Response | None]:
    """Answers REGISTER 200 with its Contact and Expires 300, the Via with `params(source)`."""

    def answer(req: Request, source: tuple[str, int]) -> Response | None:
        if req.method != "REGISTER":
            return None
        response = response_to(req, 200, "OK", "reg")
        response.headers.set("Via", (req.headers.get("Via") or "") + params(source))
        response.headers.add("Contact", (req.headers.get("Contact") or "") + ";expires=300")
        return response

    return answer


async def user_agent(server: tuple[str, int], kind: type[Transport] = UdpTransport) -> UserAgent:
    holder: list[UserAgent] = []
    listen = UdpTransport.listen if kind is UdpTransport else TcpTransport.listen
    transport = await listen(HOST, 0, lambda m, s, t: holder[0].receive(m, s, t))
    agent = UserAgent(Account("Rundruf", "pw", "example.net", server), transport)
    holder.append(agent)
    return agent


async def answer_over_tcp(data: bytes) -> tuple[Response, int]:
    """`data` sent over TCP to a user agent of its own: its answer, and the port our
    end of the connection had."""
    ua = await user_agent((HOST, 9), TcpTransport)
    try:
        reader, writer = await asyncio.open_connection(*ua.transport.local)
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        port = writer.get_extra_info("sockname")[1]
        writer.close()
    finally:
        await ua.close()
    answer = parse(head)
    assert isinstance(answer, Response)
    return answer, port


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


async def test_registering_behind_nat_registers_the_address_the_registrar_saw(
    peers: list[Peer],
) -> None:
    pbx = Peer(registrar(lambda source: ";received=203.0.113.7;rport=61000"))
    peers.append(pbx)
    ua = await user_agent(pbx.address)
    try:
        assert await ua.register_once() == 300
    finally:
        await ua.close()
    contacts = [r.headers.get("Contact") for r in pbx.requests]
    local = "{}:{}".format(*ua.transport.local)
    assert contacts == [
        f"<sip:Rundruf@{local};transport=udp>",
        "<sip:Rundruf@203.0.113.7:61000;transport=udp>",  # at once, with the learned address
    ]
    assert ua.public == ("203.0.113.7", 61000)
    assert ua.contact == "<sip:Rundruf@203.0.113.7:61000;transport=udp>"


async def test_a_registrar_that_sees_us_as_we_are_gets_one_register(peers: list[Peer]) -> None:
    # An RFC 3581 registrar on the same network: received and rport are our own address.
    pbx = Peer(registrar(lambda source: f";received={source[0]};rport={source[1]}"))
    peers.append(pbx)
    ua = await user_agent(pbx.address)
    try:
        await ua.register_once()
        await ua.register_once()  # a refresh: still the same Contact, no extra REGISTER
    finally:
        await ua.close()
    assert len(pbx.requests) == 2
    assert ua.public is None


async def test_an_answer_from_anyone_but_the_registrar_teaches_nothing(
    peers: list[Peer],
) -> None:
    forger = Peer(lambda req, source: None)
    peers.append(forger)

    def answer(req: Request, source: tuple[str, int]) -> Response | None:
        # Somebody who saw the REGISTER answers first, from another address, claiming
        # that the agent is somewhere else (where the PBX's requests would then go).
        forged = response_to(req, 200, "OK", "forged")
        forged.headers.set(
            "Via", (req.headers.get("Via") or "") + ";received=192.0.2.66;rport=6666"
        )
        forger.sock.sendto(bytes(forged), source)
        return None  # the registrar itself stays silent for a moment

    pbx = Peer(answer)
    peers.append(pbx)
    ua = await user_agent(pbx.address)
    try:
        registering = asyncio.create_task(ua.register_once())
        await asyncio.sleep(0.2)
        assert ua.public is None
        registering.cancel()
        await asyncio.gather(registering, return_exceptions=True)
    finally:
        await ua.close()


async def test_a_request_is_answered_at_its_source_with_received_and_rport(
    peers: list[Peer],
) -> None:
    pbx = Peer(lambda req, source: None)
    peers.append(pbx)
    ua = await user_agent(pbx.address)
    try:
        # The PBX's Via names an address nobody answers at (10.0.0.7:5062): it is behind
        # a NAT itself, or the Via is simply wrong. The answer goes where it came from.
        options = request("SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKopt1;rport")
        for sent in (1, 2):  # the retransmission gets the same answer, to the same place
            pbx.sock.sendto(bytes(options), ua.transport.local)
            await wait_for(lambda: len(pbx.responses) >= sent)  # noqa: B023 - awaited here
    finally:
        await ua.close()
    port = pbx.address[1]
    for response, _source in pbx.responses:
        assert response.status == 200
        assert response.headers.get("Via") == (
            f"SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKopt1;rport={port};received=127.0.0.1"
        )


async def test_over_tcp_the_answer_takes_the_connection_back_stamped(peers: list[Peer]) -> None:
    via = "SIP/2.0/TCP 10.0.0.7:5062;branch=z9hG4bKtcp1;rport"
    answer, port = await answer_over_tcp(bytes(request(via)))
    assert answer.status == 200
    assert answer.headers.get("Via") == (
        f"SIP/2.0/TCP 10.0.0.7:5062;branch=z9hG4bKtcp1;rport={port};received=127.0.0.1"
    )


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# ------------------------------------------------------------------ the keep-alive


async def test_the_dialer_keeps_the_way_back_from_the_pbx_open(
    peers: list[Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    every = nat.KEEPALIVE_S
    monkeypatch.setattr(nat, "KEEPALIVE_S", 0.05)
    pbx = Peer(registrar(lambda source: ""))
    peers.append(pbx)
    dialer = SipDialer(Account("Rundruf", "pw", "example.net", pbx.address), check_s=60)
    try:
        await dialer.start()
        await wait_for(lambda: pbx.raw.count(b"\r\n\r\n") >= 3)
    finally:
        await dialer.close()
    assert every < 30  # below the ~30 s after which NATs forget an idle UDP mapping
