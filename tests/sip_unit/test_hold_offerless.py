"""A re-INVITE without SDP (issue 15, point 7, review): our 200 carries an offer and the
member's answer comes in the ACK (RFC 3261 13.2.1), as music on hold and third party
call control do it (RFC 3725, RFC 5359). The answer in the ACK puts the call on hold or
takes it back, as an offer would. Before, the ACK's body was never read: a member who
came back this way stayed silent until the hold's limit."""

from __future__ import annotations

import socket

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.message import Request, parse
from tests.sip_unit.test_hold import HOST, PACKET, answered, heard, holds, offer, phone
from tests.sip_unit.test_reinvite import call

__all__ = ["call", "phone"]  # the fixtures


def ack(cseq: int, body: bytes) -> Request:
    head = (
        f"ACK sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-ack-{cseq}\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        f"Call-ID: re-1\r\nCSeq: {cseq} ACK\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    message = parse(head.encode() + body)
    assert isinstance(message, Request)
    return message


def acked(call: Call, cseq: int, body: bytes) -> None:
    assert call.handle(ack(cseq, body), (HOST, 5090)) is None


def our_offer(call: Call, cseq: int) -> sdp.SessionDescription:
    """Our offer in the 200 to a re-INVITE without SDP."""
    return answered(call, b"", cseq)


async def test_a_member_takes_the_call_back_in_the_ack_of_a_reinvite_without_sdp(
    call: Call, phone: socket.socket
) -> None:
    port = phone.getsockname()[1]
    answered(call, offer(port), 2)
    answered(call, offer(port, "sendonly", HOST, 3), 3)
    assert call.on_hold and holds(call) == [True]

    ours = our_offer(call, 4)
    # What we want, also on hold: an answer to "recvonly" could never take the call back.
    assert ours.direction == "sendrecv" and list(ours.payloads) == [0, 101]
    assert call.on_hold and holds(call) == []  # nothing changes before the answer
    call.send_rtp(PACKET)
    assert not heard(phone)

    acked(call, 4, offer(port, "sendrecv", HOST, 4))
    assert not call.on_hold and holds(call) == [False]
    call.send_rtp(PACKET)
    assert heard(phone), "the member took the call back, and hears nothing"


async def test_a_member_puts_the_call_on_hold_in_the_ack_of_a_reinvite_without_sdp(
    call: Call, phone: socket.socket
) -> None:
    port = phone.getsockname()[1]
    answered(call, offer(port), 2)
    our_offer(call, 3)
    acked(call, 3, offer(port, "inactive", HOST, 3))
    assert call.on_hold and holds(call) == [True]
    call.send_rtp(PACKET)
    assert not heard(phone), "RTP sent to a member who put the call on hold"


async def test_the_answer_in_the_ack_moves_the_media(call: Call, phone: socket.socket) -> None:
    port = phone.getsockname()[1]
    answered(call, offer(40000), 2)
    our_offer(call, 3)
    acked(call, 3, offer(port, "sendrecv", HOST, 3))
    assert call.negotiated is not None and call.negotiated.port == port
    call.send_rtp(PACKET)
    assert heard(phone)


async def test_only_the_ack_of_our_offer_counts_once_and_an_unusable_answer_changes_nothing(
    call: Call, phone: socket.socket
) -> None:
    port = phone.getsockname()[1]
    inactive = offer(port, "inactive", HOST, 3)
    answered(call, offer(port), 2)
    acked(call, 2, inactive)  # the ACK of our answer to an offer: no answer in it to read
    our_offer(call, 3)
    acked(call, 2, inactive)  # another CSeq
    acked(call, 3, offer(port).replace(b"RTP/AVP 0 101", b"RTP/AVP 8 101"))  # PCMU is gone
    assert not call.on_hold and holds(call) == []
    assert call.negotiated is not None and call.negotiated.codec == "PCMU"
    acked(call, 3, inactive)  # the ACK sent again: its answer was read (and refused) once
    assert not call.on_hold

    our_offer(call, 4)
    acked(call, 4, b"")  # no answer at all: the call goes on as it was
    our_offer(call, 5)
    answered(call, offer(port, "sendrecv", HOST, 6), 6)  # a newer offer of the member's
    acked(call, 5, inactive)  # the older offer's ACK, late: lapsed
    assert not call.on_hold and holds(call) == []
    call.send_rtp(PACKET)
    assert heard(phone)
