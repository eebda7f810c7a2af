"""Requests in a call's dialog are taken only with the dialog's tags and from its peer
(RFC 3261 12.2.2; docs/decisions/sip-dialog-match.md).

The outside review of issue 15 confirmed a call with a SIP INFO "1" from a stranger on
127.0.0.2 that knew only the Call-ID (From tag "evil", no To tag), and ended one with a
BYE the same way: the user agent routed requests by Call-ID alone.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from edge_agent.sip.call import Call
from edge_agent.sip.dialog_match import DialogPeer, host_key
from edge_agent.sip.message import Headers, Request, Response, parse, response_to
from edge_agent.sip.subscription import fetch_dialog_state
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.test_dialog_info import ASTERISK_IDLE, ASTERISK_IN_USE
from tests.sip_unit.udp_peers import HOST, Peer, answered_call, let_through, pbx, peers, ua

__all__ = ["pbx", "peers", "ua"]  # the fixtures

STRANGER = "127.0.0.2"


def request(
    method: str,
    call_id: str,
    sender: tuple[str, int],
    *,
    from_tag: str | None,
    to_tag: str | None,
    cseq: int,
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP {sender[0]}:{sender[1]};branch=z9hG4bK{method}{cseq}"),
            ("From", "<sip:member@pbx>" + (f";tag={from_tag}" if from_tag else "")),
            ("To", "<sip:Rundruf@pbx>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    if content_type is not None:
        headers.add("Content-Type", content_type)
    return bytes(Request(method, f"sip:Rundruf@{HOST}", headers, body))


def info_1(
    call: Call, sender: tuple[str, int], *, from_tag: str | None, to_tag: str | None, cseq: int = 2
) -> bytes:
    """An INFO with the key 1 (application/dtmf-relay, as SwyxWare sends it)."""
    return request(
        "INFO",
        call.call_id,
        sender,
        from_tag=from_tag,
        to_tag=to_tag,
        cseq=cseq,
        body=b"Signal=1\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
    )


async def answer_from(peer: Peer, cseq: int) -> Response:
    async with asyncio.timeout(2):
        while True:
            for response in peer.responses:
                if response.cseq[0] == cseq:
                    return response
            await asyncio.sleep(0.01)


class Tags(TypedDict):
    from_tag: str
    to_tag: str


def tags_of(call: Call) -> Tags:
    """The dialog's tags as the member writes them: its own in From, ours in To."""
    assert call.remote is not None and call.remote.tag is not None
    return Tags(from_tag=call.remote.tag, to_tag=call.local_tag)


async def test_a_stranger_knowing_only_the_call_id_can_neither_confirm_nor_end_the_call(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone, stranger = Peer(phone=True), Peer(STRANGER)
    peers += [phone, stranger]
    let_through(ua, stranger)  # past the flood limits: what the user agent does is tested
    call = await answered_call(ua, phone)
    stranger.agent = phone.agent
    stranger.send(info_1(call, stranger.address, from_tag="evil", to_tag=None, cseq=77))
    assert (await answer_from(stranger, 77)).status == 481
    bye = request("BYE", call.call_id, stranger.address, from_tag="evil", to_tag=None, cseq=78)
    stranger.send(bye)
    assert (await answer_from(stranger, 78)).status == 481
    assert call.digits.empty() and not call.remote_bye.is_set()

    # The member's own "1" confirms, its BYE ends the call.
    phone.send(info_1(call, phone.address, **tags_of(call)))
    assert (await answer_from(phone, 2)).status == 200
    assert await asyncio.wait_for(call.digits.get(), 1) == "1"
    phone.send(request("BYE", call.call_id, phone.address, cseq=3, **tags_of(call)))
    assert (await answer_from(phone, 3)).status == 200
    assert call.remote_bye.is_set()
    call.close()


async def test_the_dialogs_tags_from_another_host_are_refused_another_port_is_the_peer(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone, stranger, other_port = Peer(phone=True), Peer(STRANGER), Peer()
    peers += [phone, stranger, other_port]
    let_through(ua, stranger, other_port)
    call = await answered_call(ua, phone)
    stranger.agent = other_port.agent = phone.agent
    stranger.send(info_1(call, stranger.address, **tags_of(call)))
    forbidden = await answer_from(stranger, 2)
    assert forbidden.status == 403
    await asyncio.sleep(0.1)
    assert call.digits.empty()
    assert call.peer.refused == 1

    # The phone's host from another port (a PBX may send from a port of its own).
    other_port.send(info_1(call, other_port.address, cseq=3, **tags_of(call)))
    assert (await answer_from(other_port, 3)).status == 200
    assert await asyncio.wait_for(call.digits.get(), 1) == "1"
    await call.hang_up()


async def test_wrong_tags_of_the_peer_get_481_and_a_ringing_call_takes_no_request(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone = Peer(phone=True, answer=False)
    peers.append(phone)
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})
    call.begin()
    await asyncio.sleep(0.2)  # ringing: no 2xx, no dialog yet
    assert phone.agent is not None
    phone.send(info_1(call, phone.address, from_tag="phone", to_tag=call.local_tag))
    assert (await answer_from(phone, 2)).status == 481
    assert call.digits.empty()
    await call.hang_up()
    await asyncio.sleep(0.2)


async def test_a_notify_from_another_host_does_not_decide_a_members_state(
    ua: UserAgent, peers: list[Peer]
) -> None:
    pbx, stranger = Peer(), Peer(STRANGER)
    peers += [pbx, stranger]
    let_through(ua, stranger)
    fetching = asyncio.create_task(
        fetch_dialog_state(ua, f"sip:201@{HOST}", pbx.address, timeout=3.0)
    )
    async with asyncio.timeout(2):
        while not pbx.requests:  # noqa: ASYNC110 - the peer's reader is a loop callback
            await asyncio.sleep(0.01)
    subscribe = pbx.requests[0]
    pbx.agent = stranger.agent = ua.transport.local

    def notify(sender: Peer, body: bytes, cseq: int) -> bytes:
        headers = Headers(
            [
                (
                    "Via",
                    f"SIP/2.0/UDP {sender.address[0]}:{sender.address[1]};branch=z9hG4bKn{cseq}",
                ),
                ("From", f"<sip:201@{HOST}>;tag=notifier"),
                ("To", subscribe.headers.get("From") or ""),
                ("Call-ID", subscribe.call_id),
                ("CSeq", f"{cseq} NOTIFY"),
                ("Event", "dialog"),
                ("Subscription-State", "terminated;reason=timeout"),
                ("Content-Type", "application/dialog-info+xml"),
            ]
        )
        return bytes(Request("NOTIFY", f"sip:Rundruf@{HOST}", headers, body))

    stranger.send(notify(stranger, ASTERISK_IN_USE, 1))  # "busy", from a stranger
    assert (await answer_from(stranger, 1)).status == 403
    pbx.send(notify(pbx, ASTERISK_IDLE, 2))
    pbx.send(bytes(response_to(subscribe, 200, "OK", "notifier")))
    assert await fetching is False
    assert (await answer_from(pbx, 2)).status == 200


def test_hosts_compare_as_addresses() -> None:
    assert host_key("127.0.0.1") == "127.0.0.1"
    assert host_key("[::1]") == host_key("0:0:0:0:0:0:0:1") == "::1"
    assert host_key("::ffff:192.0.2.7") == "192.0.2.7"  # a dual-stack socket's IPv4 peer
    assert host_key("fe80::1%eth0") == "fe80::1"
    assert host_key("pbx.example") is None  # a name says nothing about a packet's source

    peer = DialogPeer("ours")
    peer.expect_from("pbx.example")
    peer.expect_from("2001:DB8::7")
    assert peer.hosts == {"2001:db8::7"}
    assert peer.admits(("2001:db8:0::7", 5070)) and not peer.admits(("2001:db8::8", 5060))


def test_a_dialog_is_named_by_both_tags_once_answered() -> None:
    def named(peer: DialogPeer, from_tag: str | None, to_tag: str | None) -> bool:
        data = request("INFO", "c", (HOST, 5060), from_tag=from_tag, to_tag=to_tag, cseq=2)
        message = parse(data)
        assert isinstance(message, Request)
        return peer.names(message)

    peer = DialogPeer("ours")
    assert not named(peer, "theirs", "ours")  # no 2xx yet
    peer.remote_tag = "theirs"
    assert named(peer, "theirs", "ours")
    assert not named(peer, "evil", "ours") and not named(peer, "theirs", None)
    assert not named(peer, "theirs", "other")
    rfc2543 = DialogPeer("ours", remote_tag="")  # its 2xx had no To tag
    assert named(rfc2543, None, "ours") and not named(rfc2543, "x", "ours")
    subscription = DialogPeer("ours", any_remote_tag=True)
    assert named(subscription, "whoever", "ours") and not named(subscription, "x", None)
