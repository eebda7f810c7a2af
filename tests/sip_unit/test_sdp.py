"""Session descriptions: our offer, the answers of SIPp, baresip and Asterisk, exact errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.sip import sdp
from edge_agent.sip.errors import SdpError
from edge_agent.sip.message import parse
from edge_agent.sip.sdp import Negotiated, SessionDescription

CORPUS = Path(__file__).parent / "corpus"


def body_of(name: str) -> bytes:
    return parse((CORPUS / name).read_bytes()).body


def lines(*text: str) -> bytes:
    return ("\r\n".join(text) + "\r\n").encode()


OFFER = lines(
    "v=0",
    "o=- 4242 4242 IN IP4 192.0.2.10",
    "s=-",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "m=audio 40000 RTP/AVP 8 0 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
)


def test_our_offer_is_g711_with_telephone_events() -> None:
    assert sdp.offer("192.0.2.10", 40000, 4242) == OFFER


def test_our_offer_reads_back() -> None:
    assert sdp.parse(OFFER) == SessionDescription(
        address="192.0.2.10",
        port=40000,
        payloads={8: "PCMA/8000", 0: "PCMU/8000", 101: "telephone-event/8000"},
        direction="sendrecv",
        ptime=20,
        fmtp={101: "0-16"},
        session_id=4242,
        session_version=4242,
    )


def test_an_offer_can_be_limited_and_ordered() -> None:
    offer = sdp.parse(sdp.offer("2001:db8::10", 40002, 1, payloads=(0, 96)))
    assert offer.payloads == {0: "PCMU/8000", 96: "telephone-event/8000"}
    assert offer.address == "2001:db8::10"
    assert b"c=IN IP6 2001:db8::10\r\n" in sdp.offer("2001:db8::10", 40002, 1)
    with pytest.raises(SdpError) as caught:
        sdp.offer("192.0.2.10", 40000, 1, payloads=(9,))
    assert str(caught.value) == "cannot offer payload type 9"


# ---------------------------------------------------------------- real answers


def test_it_negotiates_asterisks_answer() -> None:
    answer = sdp.parse(body_of("asterisk_200_invite.sip"))
    assert answer.payloads == {8: "PCMA/8000", 101: "telephone-event/8000"}
    assert (answer.ptime, answer.direction, answer.session_version) == (20, "sendrecv", 1385541048)
    assert sdp.negotiate(answer) == Negotiated("192.0.2.20", 13468, 8, "PCMA", 101)


def test_it_negotiates_sipps_answer_without_events() -> None:
    answer = sdp.parse(body_of("sipp_200_invite.sip"))
    assert answer.payloads == {0: "PCMU/8000"}
    assert sdp.negotiate(answer) == Negotiated("127.0.0.1", 6000, 0, "PCMU", None)


def test_it_reads_baresips_offer_with_session_attributes() -> None:
    offer = sdp.parse(body_of("baresip_invite.sip"))
    assert offer == SessionDescription(
        address="127.0.0.1",
        port=41002,
        payloads={8: "PCMA/8000", 0: "PCMU/8000", 101: "telephone-event/8000"},
        direction="sendrecv",
        ptime=20,
        fmtp={101: "0-15"},
        session_id=2165713630,
        session_version=1483309762,
    )


def test_it_answers_baresips_offer() -> None:
    answer = sdp.answer(sdp.parse(body_of("baresip_invite.sip")), "127.0.0.1", 42000, 7)
    assert answer == lines(
        "v=0",
        "o=- 7 7 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 42000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )
    assert sdp.negotiate(sdp.parse(answer)) == Negotiated("127.0.0.1", 42000, 8, "PCMA", 101)


# ---------------------------------------------------------------- negotiation


def test_it_takes_the_first_codec_the_answer_lists() -> None:
    answer = sdp.parse(lines("v=0", "c=IN IP4 192.0.2.5", "m=audio 5004 RTP/AVP 0 8"))
    assert answer.payloads == {0: "PCMU/8000", 8: "PCMA/8000"}  # static types, no rtpmap
    assert sdp.negotiate(answer).codec == "PCMU"


def test_it_knows_g711_by_name_on_a_dynamic_type() -> None:
    answer = sdp.parse(
        lines("v=0", "c=IN IP4 192.0.2.5", "m=audio 5004 RTP/AVP 9 98", "a=rtpmap:98 pcma/8000")
    )
    assert sdp.negotiate(answer) == Negotiated("192.0.2.5", 5004, 98, "PCMA", None)


@pytest.mark.parametrize(
    ("media", "error"),
    [
        (("m=audio 5004 RTP/AVP 9 18",), "no common codec"),
        (("m=audio 5004 RTP/AVP 96", "a=rtpmap:96 opus/48000/2"), "no common codec"),
        (("m=audio 0 RTP/AVP 8",), "audio stream rejected (port 0)"),
        (("m=audio 5004 RTP/SAVP 8",), "unsupported media protocol RTP/SAVP"),
    ],
)
def test_it_refuses_answers_it_cannot_use(media: tuple[str, ...], error: str) -> None:
    answer = sdp.parse(lines("v=0", "c=IN IP4 192.0.2.5", *media))
    with pytest.raises(SdpError) as caught:
        sdp.negotiate(answer)
    assert str(caught.value) == error


def test_media_level_settings_win_over_session_level_ones() -> None:
    description = sdp.parse(
        lines(
            "v=0",
            "c=IN IP4 192.0.2.1",
            "a=sendonly",
            "a=ptime:30",
            "m=video 6000 RTP/AVP 96",
            "c=IN IP4 192.0.2.99",
            "a=inactive",
            "a=rtpmap:96 H264/90000",
            "m=audio 5004 RTP/AVP 0",
            "c=IN IP4 192.0.2.2/127",
            "a=ptime:20.0",
            "m=audio 5006 RTP/AVP 8",
        )
    )
    assert (description.address, description.port) == ("192.0.2.2", 5004)
    assert (description.direction, description.ptime) == ("sendonly", 20)
    assert description.payloads == {0: "PCMU/8000"}


def test_it_is_liberal_about_line_ends() -> None:
    text = b"v=0\no=- 1 2 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 5004 RTP/AVP 8\n\n"
    assert sdp.parse(text).payloads == {8: "PCMA/8000"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "SDP does not start with v=0"),
        (lines("v=1", "m=audio 1 RTP/AVP 0"), "SDP does not start with v=0"),
        (lines("v=0", "c=IN IP4 192.0.2.1"), "no audio stream"),
        (lines("v=0", "m=audio 5004 RTP/AVP 0"), "no connection address for the audio stream"),
        (lines("v=0", "c=IN IP4", "m=audio 5004 RTP/AVP 0"), "bad c= line 'IN IP4'"),
        (  # a name that no resolver may be asked for (issue 15, point 2)
            lines("v=0", "c=IN IP4 pbx_1.example", "m=audio 5004 RTP/AVP 0"),
            "bad address in c= line 'IN IP4 pbx_1.example'",
        ),
        (
            lines("v=0", f"c=IN IP4 {'a.' * 127}b", "m=audio 5004 RTP/AVP 0"),
            f"bad address in c= line 'IN IP4 {'a.' * 26}a'",
        ),
        (lines("v=0", "c=IN IP4 a", "m=audio 5004 RTP/AVP"), "bad m= line 'audio 5004 RTP/AVP'"),
        (
            lines("v=0", "c=IN IP4 a", "m=audio 70000 RTP/AVP 0"),
            "bad port in m= line 'audio 70000 RTP/AVP 0'",
        ),
        (lines("v=0", "c=IN IP4 a", "m=audio 5004 RTP/AVP 0 PCMA"), "bad payload type 'PCMA'"),
        (lines("v=0", "c=IN IP4 a", "m=audio 5004 RTP/AVP 200"), "bad payload type '200'"),
        (lines("v=0", "c=IN IP4 a", "m=audio 1 RTP/AVP 0", "a=ptime:x"), "bad ptime 'x'"),
        (lines("v=0", "just text"), "bad SDP line 'just text'"),
        (b"v=0\r\ns=\xff\r\n", "SDP is not UTF-8"),
    ],
)
def test_it_rejects_bad_descriptions(body: bytes, error: str) -> None:
    with pytest.raises(SdpError) as caught:
        sdp.parse(body)
    assert str(caught.value) == error


def test_numbers_that_are_not_plain_digits_are_ignored_not_a_crash() -> None:
    # "²" passes str.isdigit() and 4,400 digits pass it too; int() refuses both.
    huge = "9" * 4400
    body = lines(
        "v=0",
        f"o=- ² {huge} IN IP4 192.0.2.1",
        "c=IN IP4 192.0.2.1",
        "m=audio 5004 RTP/AVP 8",
        f"a=rtpmap:{huge} PCMA/8000",
        "a=rtpmap:²8 PCMA/8000",
    )
    parsed = sdp.parse(body)
    assert (parsed.session_id, parsed.session_version) == (0, 0)
    assert parsed.payloads == {8: "PCMA/8000"}


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_an_answer_mirrors_the_direction(offered: str, answered: str) -> None:
    offer = sdp.parse(OFFER.replace(b"a=sendrecv", f"a={offered}".encode()))
    assert sdp.parse(sdp.answer(offer, "192.0.2.20", 5000, 1)).direction == answered


def test_an_answer_without_a_common_codec_rejects_the_stream() -> None:
    offer = sdp.parse(lines("v=0", "c=IN IP4 192.0.2.5", "m=audio 5004 RTP/AVP 9", "a=ptime:30"))
    answer = sdp.answer(offer, "192.0.2.20", 5000, 3)
    assert answer == lines(
        "v=0",
        "o=- 3 3 IN IP4 192.0.2.20",
        "s=-",
        "c=IN IP4 192.0.2.20",
        "t=0 0",
        "m=audio 0 RTP/AVP 9",
        "a=rtpmap:9 G722/8000",
        "a=inactive",
    )
    with pytest.raises(SdpError):
        sdp.negotiate(sdp.parse(answer))


def test_a_description_writes_back_what_it_read() -> None:
    for name in ("asterisk_200_invite.sip", "baresip_invite.sip", "sipp_invite.sip"):
        description = sdp.parse(body_of(name))
        assert sdp.parse(bytes(description)) == description
