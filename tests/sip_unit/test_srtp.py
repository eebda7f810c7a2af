"""SRTP with SDES keys (issue 15, point 9): the crypto lines, libsrtp's protect and
unprotect, and a call that offers, keys, sends, hears digits and refuses plain RTP."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator

import pytest

from edge_agent.sip import sdp, sdp_crypto
from edge_agent.sip.call import Call
from edge_agent.sip.errors import SdpError
from edge_agent.sip.message import Request, parse
from edge_agent.sip.rtp import RtpPacket, TelephoneEvent
from edge_agent.sip.srtp import CallCrypto, SrtpRequired, SrtpStreams, new_key
from edge_agent.sip.transport import UdpTransport
from edge_agent.sip.ua import Account, UserAgent

HOST = "127.0.0.1"
PEER = (HOST, 40000)
KEY = bytes(range(30))
INLINE = base64.b64encode(KEY).decode()


# ------------------------------------------------------------------ crypto lines


def test_our_crypto_line_is_the_rfc_4568_form_and_parses_back() -> None:
    line = sdp_crypto.format_line(1, KEY)
    assert line == f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"
    assert sdp_crypto.parse_line(line) == sdp_crypto.SdesKey(1, KEY)


@pytest.mark.parametrize(
    "value",
    [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^31",
        f"7 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|1048576 WSH=64",
        f"1   AES_CM_128_HMAC_SHA1_80   inline:{INLINE}",
    ],
)
def test_usable_lines_give_their_key(value: str) -> None:
    parsed = sdp_crypto.parse_line(value)
    assert parsed is not None and parsed.key == KEY


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"1 AES_CM_128_HMAC_SHA1_32 inline:{INLINE}", "another suite"),
        (f"1 AEAD_AES_256_GCM inline:{INLINE}", "another suite"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^31|1:4", "an MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|1:4", "an MKI without lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^10", "a lifetime of 1024 packets"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} UNENCRYPTED_SRTP", "no encryption"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} KDR=10", "key derivation rate"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE};inline:{INLINE}", "two keys"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{INLINE}", "a key by reference"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE[:-4]}", "a short key"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}AAAA", "a long key"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE[:-1]}!", "not base64"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{INLINE}", "no tag"),
        ("1 AES_CM_128_HMAC_SHA1_80", "no key"),
        ("", "nothing"),
    ],
)
def test_lines_we_cannot_use_are_skipped(value: str, why: str) -> None:
    assert sdp_crypto.parse_line(value) is None, why


def test_the_answer_must_name_the_offered_tag() -> None:
    other = base64.b64encode(bytes(30)).decode()
    lines = (
        f"2 AES_CM_128_HMAC_SHA1_80 inline:{other}",
        f"1 AES_CM_128_HMAC_SHA1_32 inline:{other}",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}",
    )
    assert sdp_crypto.answer_key(lines, 1) == sdp_crypto.SdesKey(1, KEY)
    assert sdp_crypto.answer_key(lines[:2], 1) is None
    assert sdp_crypto.offer_key(lines) == sdp_crypto.SdesKey(2, bytes(30))


def test_an_offer_with_a_key_is_rtp_savp_and_the_key_survives_a_parse() -> None:
    line = sdp_crypto.format_line(1, KEY)
    body = sdp.offer(HOST, 40000, 7, proto="RTP/SAVP", crypto=(line,))
    assert b"m=audio 40000 RTP/SAVP 8 0 101\r\n" in body
    assert f"a=crypto:{line}\r\n".encode() in body
    parsed = sdp.parse(body)
    assert (parsed.proto, parsed.crypto) == ("RTP/SAVP", (line,))
    # Keys are no part of a repr (a log line or a traceback that shows the description).
    assert INLINE not in repr(parsed) and "inline" not in repr(parsed)


def test_only_the_audio_streams_crypto_lines_count_and_only_a_few() -> None:
    video = "a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(30)).decode()
    body = sdp.offer(HOST, 40000, 7, crypto=tuple(f"{n} x" for n in range(100))) + (
        f"m=video 40002 RTP/SAVP 96\r\n{video}\r\n".encode()
    )
    parsed = sdp.parse(body)
    assert len(parsed.crypto) == sdp.MAX_CRYPTO_LINES
    assert not any("AES_CM" in value for value in parsed.crypto)


def test_an_rtp_savp_answer_is_taken_only_by_a_call_that_speaks_srtp() -> None:
    answer = sdp.parse(sdp.offer(HOST, 40000, 7, proto="RTP/SAVP"))
    with pytest.raises(SdpError, match="RTP/SAVP"):
        sdp.negotiate(answer)
    assert sdp.negotiate(answer, secure=True).codec == "PCMA"


# ----------------------------------------------------------------------- libsrtp


def rtp(sequence: int, payload: bytes = b"\xd5" * 160, pt: int = 8) -> bytes:
    return bytes(RtpPacket(pt, sequence, 160 * sequence, 0x1234, payload))


def test_protect_and_unprotect_are_a_round_trip() -> None:
    ours, theirs = new_key(), new_key()
    agent, phone = SrtpStreams(ours, theirs), SrtpStreams(theirs, ours)
    packets = [rtp(n, bytes([n]) * 160) for n in range(1, 60)]
    protected = [agent.protect(p) for p in packets]
    assert all(len(s) == len(p) + 10 for s, p in zip(protected, packets, strict=True))
    assert all(s[12:172] != p[12:] for s, p in zip(protected, packets, strict=True))
    assert [phone.unprotect(s) for s in protected] == packets
    assert phone.rejected == 0


def test_a_tampered_replayed_or_foreign_packet_is_dropped_and_counted() -> None:
    ours, theirs = new_key(), new_key()
    agent, phone = SrtpStreams(ours, theirs), SrtpStreams(theirs, ours)
    good = agent.protect(rtp(1))
    tampered = good[:20] + bytes([good[20] ^ 1]) + good[21:]
    assert phone.unprotect(tampered) is None
    assert phone.unprotect(good) == rtp(1)
    assert phone.unprotect(good) is None  # the same packet again: a replay
    assert phone.unprotect(SrtpStreams(new_key(), new_key()).protect(rtp(2))) is None
    assert phone.unprotect(rtp(3)) is None  # plain RTP
    assert phone.unprotect(b"\x80") is None
    assert phone.unprotect(bytes(2000)) is None  # longer than libsrtp's buffer
    assert phone.rejected == 6


def test_every_call_offers_a_key_of_its_own() -> None:
    offers = {CallCrypto("required").offer_lines() for _ in range(50)}
    assert len(offers) == 50
    assert CallCrypto("off").offer_lines() == ()


def test_required_takes_no_answer_without_a_key_and_sends_nothing_plain() -> None:
    crypto = CallCrypto("required")
    assert crypto.offer_proto == "RTP/SAVP"
    with pytest.raises(SrtpRequired) as refused:
        crypto.answered("RTP/AVP", ())
    assert refused.value.code == "srtpRequired"
    assert crypto.outgoing(rtp(1)) == b""
    assert crypto.incoming(rtp(1)) == b""


def test_optional_offers_the_key_in_rtp_avp_and_takes_either_answer() -> None:
    plain = CallCrypto("optional")
    assert plain.offer_proto == "RTP/AVP" and plain.offer_lines()
    plain.answered("RTP/AVP", ())
    assert not plain.secure and plain.outgoing(rtp(1)) == rtp(1)
    keyed = CallCrypto("optional")
    keyed.answered("RTP/AVP", (sdp_crypto.format_line(1, KEY),))
    assert keyed.secure and len(keyed.outgoing(rtp(1))) == len(rtp(1)) + 10
    # RTP/SAVP without a key: nobody could read our audio.
    with pytest.raises(SrtpRequired):
        CallCrypto("optional").answered("RTP/SAVP", ())


# ---------------------------------------------------------------------- the call


Bed = tuple[UserAgent, socket.socket]  # the user agent and the PBX's socket


@pytest.fixture
async def ua() -> AsyncIterator[Bed]:
    pbx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes the INVITE
    pbx.bind((HOST, 0))
    transport = await UdpTransport.listen(HOST, 0, lambda *_: None)
    ua = UserAgent(Account("Rundruf", "pw", HOST, pbx.getsockname(), register=False), transport)
    try:
        yield ua, pbx
    finally:
        transport.close()
        pbx.close()


def offered_key(call: Call) -> bytes:
    assert call.invite is not None
    found = sdp_crypto.offer_key(sdp.parse(call.invite.body).crypto)
    assert found is not None
    return found.key


def keyed_call(ua: UserAgent, pbx: socket.socket, phone_key: bytes) -> Call:
    """A call in `required` mode whose answer (from PEER) brought `phone_key`."""
    call = Call(ua, f"sip:member@{HOST}:{pbx.getsockname()[1]}", {}, srtp="required")
    call.begin()
    line = sdp_crypto.format_line(1, phone_key)
    answer = sdp.parse(sdp.offer(HOST, PEER[1], 7, payloads=(8, 101), crypto=(line,)))
    call.negotiated = sdp.negotiate(answer, secure=True)
    call.crypto.answered("RTP/SAVP", answer.crypto)
    return call


def event(digit: int, sequence: int, ssrc: int = 0x5555) -> bytes:
    payload = bytes(TelephoneEvent(digit, True, 10, 800))
    return bytes(RtpPacket(101, sequence, 8000 * sequence, ssrc, payload, marker=True))


def close(call: Call) -> None:
    assert call._transaction is not None
    call._transaction.final.cancel()
    call.close()


async def test_a_required_call_offers_only_rtp_savp_with_a_fresh_key(ua: Bed) -> None:
    first = Call(ua[0], f"sip:a@{HOST}", {}, srtp="required")
    second = Call(ua[0], f"sip:b@{HOST}", {}, srtp="required")
    first.begin()
    second.begin()
    try:
        assert first.invite is not None
        body = first.invite.body.decode()
        assert "m=audio " in body and " RTP/SAVP 8 0 101\r\n" in body
        assert body.count("a=crypto:") == 1
        assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in body
        assert offered_key(first) != offered_key(second)
    finally:
        close(first)
        close(second)


async def test_only_an_authenticated_digit_counts_on_an_srtp_call(ua: Bed) -> None:
    phone_key = new_key()
    call = keyed_call(*ua, phone_key)
    phone = SrtpStreams(phone_key, offered_key(call))
    try:
        # A plain "1" from the peer's own address and port (no attacker needs another).
        call.on_rtp(event(1, 1), PEER)
        # A "1" under a key the attacker made up.
        call.on_rtp(SrtpStreams(new_key(), new_key()).protect(event(1, 2)), PEER)
        assert call.digits.empty()
        assert call.crypto.rejected == 2
        call.on_rtp(phone.protect(event(1, 3)), PEER)
        assert call.digits.get_nowait() == "1"
        # The same packet again, captured and replayed: libsrtp's replay window.
        replay = phone.protect(event(2, 5))
        call.on_rtp(replay, PEER)
        call.on_rtp(replay, PEER)
        assert [call.digits.get_nowait() for _ in range(call.digits.qsize())] == ["2"]
        assert call.crypto.rejected == 3
    finally:
        close(call)


async def test_a_forged_packet_from_elsewhere_never_latches_an_srtp_call(ua: Bed) -> None:
    phone_key = new_key()
    call = keyed_call(*ua, phone_key)
    try:
        # Behind NAT a packet from another port of the IP our SIP goes to may latch
        # (media_source.py); with SRTP only one that authenticates may.
        call.rtp_source.expect(("10.0.0.5", 40000), [8, 101])
        call.on_rtp(event(1, 1), (HOST, 50000))
        assert call.rtp_source.latched is None
        phone = SrtpStreams(phone_key, offered_key(call))
        call.on_rtp(phone.protect(event(1, 2)), (HOST, 50001))
        assert call.rtp_source.latched == (HOST, 50001)
    finally:
        close(call)


async def test_what_an_srtp_call_sends_is_srtp_under_its_offered_key(ua: Bed) -> None:
    phone_key = new_key()
    call = keyed_call(*ua, phone_key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((HOST, 0))
    listener.settimeout(2)
    try:
        call.rtp_source.expect(listener.getsockname(), [8, 101])
        call.send_rtp(rtp(1))
        data = listener.recv(2048)
        assert len(data) == len(rtp(1)) + 10 and data[12:] != rtp(1)[12:]
        assert SrtpStreams(phone_key, offered_key(call)).unprotect(data) == rtp(1)
    finally:
        listener.close()
        close(call)


def reinvite(body: bytes) -> bytes:
    head = (
        f"INVITE sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-srtp-re\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        "Call-ID: srtp-re\r\nCSeq: 2 INVITE\r\nContact: <sip:member@127.0.0.1:5090>\r\n"
        "Content-Type: application/sdp\r\n"
    )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def request(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


async def test_a_reoffer_without_a_key_is_refused_and_the_call_stays_srtp(ua: Bed) -> None:
    call = keyed_call(*ua, new_key())
    try:
        plain = sdp.offer(HOST, PEER[1], 9, payloads=(8, 101))
        response = call.handle(request(reinvite(plain)), (HOST, 5090))
        assert response is not None and response.status == 488
        assert call.crypto.secure and call.crypto.outgoing(rtp(1)) != rtp(1)
    finally:
        close(call)


async def test_a_reoffer_with_a_new_key_is_answered_with_ours_and_its_key_is_used(ua: Bed) -> None:
    call = keyed_call(*ua, new_key())
    ours = offered_key(call)
    try:
        new = new_key()
        line = sdp_crypto.format_line(5, new)
        offer = sdp.offer(HOST, PEER[1], 9, payloads=(8, 101), proto="RTP/SAVP", crypto=(line,))
        response = call.handle(request(reinvite(offer)), (HOST, 5090))
        assert response is not None and response.status == 200
        answer = sdp.parse(response.body)
        assert answer.proto == "RTP/SAVP"
        assert sdp_crypto.answer_key(answer.crypto, 5) == sdp_crypto.SdesKey(5, ours)
        call.on_rtp(SrtpStreams(new, ours).protect(event(1, 9)), PEER)
        assert call.digits.get_nowait() == "1"
    finally:
        close(call)


async def test_a_plain_call_refuses_an_rtp_savp_reoffer(ua: Bed) -> None:
    call = Call(ua[0], f"sip:a@{HOST}", {}, srtp="optional")
    call.begin()
    try:
        call.negotiated = sdp.negotiate(sdp.parse(sdp.offer(HOST, PEER[1], 7)), secure=True)
        call.crypto.answered("RTP/AVP", ())  # the PBX ignored our key: plain RTP
        line = sdp_crypto.format_line(1, KEY)
        offer = sdp.offer(HOST, PEER[1], 9, payloads=(8, 101), proto="RTP/SAVP", crypto=(line,))
        response = call.handle(request(reinvite(offer)), (HOST, 5090))
        assert response is not None and response.status == 488
    finally:
        close(call)


def offerless(cseq: int) -> Request:
    """A re-INVITE without SDP: our 200 offers, the ACK answers (issue 15, point 7 review)."""
    data = reinvite(b"").replace(b"CSeq: 2 INVITE", f"CSeq: {cseq} INVITE".encode())
    return request(data.replace(b"z9hG4bK-srtp-re", f"z9hG4bK-srtp-{cseq}".encode()))


def ack(cseq: int, body: bytes) -> Request:
    head = (
        f"ACK sip:Rundruf@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:5090;branch=z9hG4bK-srtp-ack-{cseq}\r\n"
        "From: <sip:member@pbx>;tag=them\r\nTo: <sip:Rundruf@pbx>;tag=us\r\n"
        f"Call-ID: srtp-re\r\nCSeq: {cseq} ACK\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return request(head.encode() + body)


async def test_the_answer_in_the_ack_to_our_offer_brings_the_phones_key(ua: Bed) -> None:
    call = keyed_call(*ua, new_key())
    ours = offered_key(call)
    try:
        offered = call.handle(offerless(2), (HOST, 5090))
        assert offered is not None and offered.status == 200
        offer = sdp.parse(offered.body)
        found = sdp_crypto.offer_key(offer.crypto)
        assert offer.proto == "RTP/SAVP" and found is not None and found.key == ours
        # An answer without a key is not taken: the call stays SRTP under the old key.
        call.handle(ack(2, sdp.offer(HOST, PEER[1], 9, payloads=(8, 101))), (HOST, 5090))
        assert call.crypto.secure and call.crypto.outgoing(rtp(1)) != rtp(1)
        new = new_key()
        line = sdp_crypto.format_line(found.tag, new)
        answer = sdp.offer(HOST, PEER[1], 9, payloads=(8, 101), proto="RTP/SAVP", crypto=(line,))
        assert call.handle(offerless(3), (HOST, 5090)) is not None
        call.handle(ack(3, answer), (HOST, 5090))
        call.on_rtp(SrtpStreams(new, ours).protect(event(1, 9)), PEER)
        assert call.digits.get_nowait() == "1"
    finally:
        close(call)
