"""RTP and RFC 4733 packets as they appear on the wire: round trips, exact errors, DTMF."""

from __future__ import annotations

import pytest

from edge_agent.sip.errors import RtpParseError, SipError
from edge_agent.sip.rtp import (
    EVENT_DIGITS,
    DtmfDetector,
    RtpPacket,
    TelephoneEvent,
    digit_of,
    is_rtcp,
)


def wire(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# PCMU from a mixer: V=2 CC=1, PT 0, seq 8000, ts 800, SSRC deadbeef, CSRC 12345678.
PCMU_WITH_CSRC = wire("81 00 1f40 00000320 deadbeef 12345678") + b"\xff" * 160
# PCMA with marker and an RFC 8285 one-byte extension (0xBEDE, 1 word: id 1, 1 byte, pad).
PCMA_WITH_EXTENSION = wire("90 88 0001 0000a000 01020304  bede 0001 10ab 0000") + b"\xd5" * 160
# Padding (P bit): 4 payload bytes, then 3 zero bytes and the count 4.
PADDED = wire("a0 00 0102 00000010 0a0b0c0d  7f7e7d7c  00 00 00 04")
# RFC 4733: digit 5 pressed at ts 48000 on PT 101: start (M), update, end three times.
DIGIT_5 = [
    wire("80 e5 0064 0000bb80 55667788  05 0a 00a0"),
    wire("80 65 0065 0000bb80 55667788  05 0a 0140"),
    wire("80 65 0066 0000bb80 55667788  05 8a 0320"),
    wire("80 65 0067 0000bb80 55667788  05 8a 0320"),
    wire("80 65 0068 0000bb80 55667788  05 8a 0320"),
]


def event_packet(timestamp, event, *, end=False, duration=160, sequence=1, ssrc=0x55667788):
    payload = bytes(TelephoneEvent(event, end, 10, duration))
    return RtpPacket(101, sequence, timestamp, ssrc, payload)


class TestRtpPacket:
    def test_it_parses_a_pcmu_packet_with_a_csrc_and_writes_it_back(self):
        packet = RtpPacket.parse(PCMU_WITH_CSRC)
        assert packet == RtpPacket(0, 8000, 800, 0xDEADBEEF, b"\xff" * 160, False, (0x12345678,))
        assert bytes(packet) == PCMU_WITH_CSRC

    def test_it_skips_a_header_extension(self):
        packet = RtpPacket.parse(PCMA_WITH_EXTENSION)
        assert packet == RtpPacket(8, 1, 40960, 0x01020304, b"\xd5" * 160, marker=True)
        # We never send extensions: the canonical form drops it and keeps the rest.
        assert bytes(packet) == wire("80 88 0001 0000a000 01020304") + b"\xd5" * 160

    def test_it_strips_padding(self):
        packet = RtpPacket.parse(PADDED)
        assert packet.payload == wire("7f7e7d7c")
        assert bytes(packet) == wire("80 00 0102 00000010 0a0b0c0d 7f7e7d7c")
        assert RtpPacket.parse(bytes(packet)) == packet

    def test_it_parses_an_event_packet_with_the_marker(self):
        packet = RtpPacket.parse(DIGIT_5[0])
        assert (packet.payload_type, packet.marker, packet.sequence) == (101, True, 100)
        assert packet.timestamp == 48000
        assert bytes(packet) == DIGIT_5[0]

    def test_an_empty_payload_is_a_packet(self):
        assert RtpPacket.parse(wire("80 00 0000 00000000 00000001")).payload == b""

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            (b"", "RTP packet of 0 bytes; the fixed header has 12"),
            (wire("80 00 0000 00000000 000000"), "RTP packet of 11 bytes; the fixed header has 12"),
            (wire("40 00 0000 00000000 00000001"), "RTP version 1; only version 2 is understood"),
            (
                wire("82 00 0000 00000000 00000001 00000002"),
                "RTP packet of 16 bytes ends inside its 2 CSRCs (20 bytes needed)",
            ),
            (
                wire("90 00 0000 00000000 00000001 bede"),
                "RTP packet of 14 bytes ends inside its header extension's "
                "4-byte header at offset 12",
            ),
            (
                wire("90 00 0000 00000000 00000001 bede 0002 10ab0000"),
                "RTP header extension of 2 words runs past the end (24 bytes needed, 20 present)",
            ),
            (
                wire("a0 00 0000 00000000 00000001 ff 00"),
                "RTP padding count is 0; it counts itself, so at least 1",
            ),
            (
                wire("a0 00 0000 00000000 00000001 ff 05"),
                "RTP padding of 5 bytes is longer than the 2 bytes after the header",
            ),
            (
                wire("a1 00 0000 00000000 00000001 00000002"),
                "RTP padding of 2 bytes is longer than the 0 bytes after the header",
            ),
        ],
    )
    def test_it_rejects_malformed_packets_with_the_reason(self, data, error):
        with pytest.raises(RtpParseError) as raised:
            RtpPacket.parse(data)
        assert str(raised.value) == error
        assert isinstance(raised.value, SipError)

    def test_it_refuses_to_build_fields_that_do_not_fit(self):
        with pytest.raises(ValueError, match=r"^RTP payload type 128 is not in 0-127$"):
            RtpPacket(128, 0, 0, 0, b"")
        with pytest.raises(ValueError, match=r"^RTP sequence 65536 is not in 0-65535$"):
            RtpPacket(0, 65536, 0, 0, b"")
        with pytest.raises(ValueError, match=r"^RTP timestamp 4294967296 does not fit 32 bits$"):
            RtpPacket(0, 0, 2**32, 0, b"")
        with pytest.raises(ValueError, match=r"^RTP carries at most 15 CSRCs, got 16$"):
            RtpPacket(0, 0, 0, 0, b"", csrc=tuple(range(16)))

    def test_it_tells_rtcp_from_rtp_on_a_muxed_port(self):
        sender_report = wire("80 c8 0006 deadbeef")
        assert is_rtcp(sender_report)
        assert not is_rtcp(PCMU_WITH_CSRC)
        assert not is_rtcp(DIGIT_5[0])  # PT 101 with the marker is 0xe5, above 223


class TestTelephoneEvent:
    def test_it_parses_start_and_end_payloads(self):
        assert TelephoneEvent.parse(wire("05 0a 00a0")) == TelephoneEvent(5, False, 10, 160)
        assert TelephoneEvent.parse(wire("0b 8a 0320")) == TelephoneEvent(11, True, 10, 800)

    def test_it_ignores_the_reserved_bit(self):
        assert TelephoneEvent.parse(wire("01 ca 0320")) == TelephoneEvent(1, True, 10, 800)

    def test_it_round_trips(self):
        for payload in ("05 0a 00a0", "0b 8a 0320", "10 3f ffff"):
            assert bytes(TelephoneEvent.parse(wire(payload))) == wire(payload)

    def test_it_parses_several_events_in_one_payload(self):
        assert TelephoneEvent.parse_all(wire("01 8a 0320 02 0a 00a0")) == (
            TelephoneEvent(1, True, 10, 800),
            TelephoneEvent(2, False, 10, 160),
        )

    def test_it_rejects_a_payload_that_is_not_one_event(self):
        with pytest.raises(RtpParseError) as raised:
            TelephoneEvent.parse(wire("05 0a 00"))
        assert str(raised.value) == "telephone-event payload of 3 bytes; one event has 4"
        with pytest.raises(RtpParseError) as raised:
            TelephoneEvent.parse(wire("05 0a 00a0 05"))
        assert str(raised.value) == "telephone-event payload of 5 bytes; one event has 4"

    def test_it_rejects_a_payload_that_is_not_whole_events(self):
        for size in (0, 6):
            with pytest.raises(RtpParseError) as raised:
                TelephoneEvent.parse_all(bytes(size))
            assert str(raised.value) == (
                f"telephone-event payload of {size} bytes; events take 4 bytes each, at least one"
            )

    def test_digits_map_events_0_to_15(self):
        assert [digit_of(event) for event in range(16)] == list(EVENT_DIGITS)
        assert (digit_of(10), digit_of(11), digit_of(12)) == ("*", "#", "A")
        assert digit_of(16) is None  # flash
        assert digit_of(-1) is None


class TestDtmfDetector:
    def feed_all(self, detector, packets):
        return [
            detector.feed(p if isinstance(p, RtpPacket) else RtpPacket.parse(p)) for p in packets
        ]

    def test_a_press_gives_its_digit_once_despite_three_end_packets(self):
        assert self.feed_all(DtmfDetector(), DIGIT_5) == ["5", None, None, None, None]

    def test_a_press_whose_first_packets_were_lost_is_still_reported_once(self):
        assert self.feed_all(DtmfDetector(), DIGIT_5[2:]) == ["5", None, None]

    def test_a_press_seen_only_as_its_last_end_packet_counts(self):
        assert self.feed_all(DtmfDetector(), DIGIT_5[-1:]) == ["5"]

    def test_two_presses_of_the_same_digit_are_two_digits(self):
        detector = DtmfDetector()
        first = [event_packet(8000, 9), event_packet(8000, 9, end=True, duration=800)] * 2
        second = [event_packet(16000, 9), event_packet(16000, 9, end=True, duration=800)]
        assert self.feed_all(detector, first + second) == ["9", None, None, None, "9", None]

    def test_a_late_packet_of_an_earlier_press_is_ignored(self):
        detector = DtmfDetector()
        packets = [
            event_packet(8000, 1),
            event_packet(16000, 2),
            event_packet(8000, 1, end=True, duration=800),  # arrives after the next press
            event_packet(16000, 2, end=True, duration=800),
        ]
        assert self.feed_all(detector, packets) == ["1", "2", None, None]

    def test_presses_across_the_timestamp_wrap_are_in_order(self):
        packets = [event_packet(0xFFFFFF00, 3), event_packet(0x100, 4), event_packet(0xFFFFFF00, 3)]
        assert self.feed_all(DtmfDetector(), packets) == ["3", "4", None]

    def test_a_long_press_split_into_segments_is_one_press(self):
        # RFC 4733 2.5.1.3: 65535 without the end bit, then a segment 65535 samples later.
        packets = [
            event_packet(1000, 0, duration=65000),
            event_packet(1000, 0, duration=65535),
            event_packet(1000 + 65535, 0, duration=800),
            event_packet(1000 + 65535, 0, end=True, duration=1600),
        ]
        assert self.feed_all(DtmfDetector(), packets) == ["0", None, None, None]

    def test_a_new_press_after_an_ended_maximal_event_is_a_new_press(self):
        packets = [
            event_packet(1000, 0, end=True, duration=65535),
            event_packet(1000 + 65535, 0, duration=800),
        ]
        assert self.feed_all(DtmfDetector(), packets) == ["0", "0"]

    def test_non_digit_events_give_nothing(self):
        assert self.feed_all(DtmfDetector(), [event_packet(8000, 16)]) == [None]

    def test_a_new_ssrc_starts_over(self):
        packets = [event_packet(90000, 7), event_packet(1000, 8, ssrc=0xABCDEF01)]
        assert self.feed_all(DtmfDetector(), packets) == ["7", "8"]

    def test_several_presses_packed_in_one_packet_are_all_reported(self):
        payload = wire("01 8a 0320 02 8a 0320")
        detector = DtmfDetector()
        assert detector.feed(RtpPacket(101, 1, 8000, 1, payload)) == "12"
        # The second event started at 8000 + 800; a repeat of it alone is no new press.
        assert detector.feed(RtpPacket(101, 2, 8800, 1, wire("02 8a 0320"))) is None

    def test_a_malformed_payload_raises(self):
        with pytest.raises(RtpParseError, match=r"^telephone-event payload of 3 bytes"):
            DtmfDetector().feed(RtpPacket(101, 1, 8000, 1, b"\x05\x0a\x00"))
