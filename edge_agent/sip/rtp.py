"""RTP packets (RFC 3550) and telephone events (RFC 4733), and a DTMF detector.

Pure: bytes in, dataclasses out, and back. `RtpPacket.__bytes__` writes the
canonical form we send (no padding, no header extension); a parsed packet's
padding and extension are checked and skipped, so a round trip of a padded or
extended packet gives the same fields with fewer bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge_agent.sip.errors import RtpParseError

__all__ = [
    "EVENT_DIGITS",
    "DtmfDetector",
    "RtpPacket",
    "TelephoneEvent",
    "digit_of",
    "is_rtcp",
]

_HEADER = struct.Struct("!BBHII")
_EVENT = struct.Struct("!BBH")
_MASK32 = 0xFFFFFFFF
VERSION = 2
EVENT_DIGITS = "0123456789*#ABCD"
# RFC 4733 2.5.1.3: a segment of a long event reports at most this duration.
MAX_EVENT_DURATION = 0xFFFF


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a muxed RTP/RTCP port is RTCP (RFC 5761 4: types 192-223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type {self.payload_type} is not in 0-127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise ValueError(f"RTP sequence {self.sequence} is not in 0-65535")
        for name, value in (("timestamp", self.timestamp), ("SSRC", self.ssrc)):
            if not 0 <= value <= _MASK32:
                raise ValueError(f"RTP {name} {value} does not fit 32 bits")
        if len(self.csrc) > 15:
            raise ValueError(f"RTP carries at most 15 CSRCs, got {len(self.csrc)}")

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """The packet in `data`; RtpParseError says what is wrong with it."""
        size = len(data)
        if size < _HEADER.size:
            raise RtpParseError(f"RTP packet of {size} bytes; the fixed header has 12")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != VERSION:
            raise RtpParseError(f"RTP version {first >> 6}; only version 2 is understood")
        count = first & 0x0F
        offset = _HEADER.size + 4 * count
        if size < offset:
            raise RtpParseError(
                f"RTP packet of {size} bytes ends inside its {count} CSRCs ({offset} bytes needed)"
            )
        csrc = struct.unpack_from(f"!{count}I", data, _HEADER.size)
        if first & 0x10:  # RFC 3550 5.3.1: 16-bit profile, 16-bit length in words, words
            if size < offset + 4:
                raise RtpParseError(
                    f"RTP packet of {size} bytes ends inside its header extension's "
                    f"4-byte header at offset {offset}"
                )
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
            if size < offset:
                raise RtpParseError(
                    f"RTP header extension of {words} words runs past the end "
                    f"({offset} bytes needed, {size} present)"
                )
        end = size
        if first & 0x20:  # RFC 3550 5.1: the last octet counts the padding, itself included
            padding = data[-1]
            if padding == 0:
                raise RtpParseError("RTP padding count is 0; it counts itself, so at least 1")
            if padding > size - offset:
                raise RtpParseError(
                    f"RTP padding of {padding} bytes is longer than the "
                    f"{size - offset} bytes after the header"
                )
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
        )

    def __bytes__(self) -> bytes:
        head = _HEADER.pack(
            0x80 | len(self.csrc),
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
        )
        return head + struct.pack(f"!{len(self.csrc)}I", *self.csrc) + self.payload


def digit_of(event: int) -> str | None:
    """The DTMF digit of an RFC 4733 event code (0-9, 10 '*', 11 '#', 12-15 A-D), else None."""
    return EVENT_DIGITS[event] if 0 <= event < len(EVENT_DIGITS) else None


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 2.3 event: code, end bit, volume in -dBm0 (0-63), duration in samples."""

    event: int
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"telephone event {self.event} is not in 0-255")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"telephone event volume {self.volume} is not in 0-63")
        if not 0 <= self.duration <= MAX_EVENT_DURATION:
            raise ValueError(f"telephone event duration {self.duration} is not in 0-65535")

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """The single event of a 4-byte payload; RtpParseError for any other length."""
        if len(payload) != _EVENT.size:
            raise RtpParseError(f"telephone-event payload of {len(payload)} bytes; one event has 4")
        return cls._unpack(payload, 0)

    @classmethod
    def parse_all(cls, payload: bytes) -> tuple[TelephoneEvent, ...]:
        """Every event of a payload (RFC 4733 2.5.1.5 lets one packet carry several)."""
        if not payload or len(payload) % _EVENT.size:
            raise RtpParseError(
                f"telephone-event payload of {len(payload)} bytes; "
                "events take 4 bytes each, at least one"
            )
        return tuple(cls._unpack(payload, at) for at in range(0, len(payload), _EVENT.size))

    @classmethod
    def _unpack(cls, payload: bytes, offset: int) -> TelephoneEvent:
        # The R bit (0x40) is reserved: senders set it to 0, receivers ignore it.
        event, flags, duration = _EVENT.unpack_from(payload, offset)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def _newer(timestamp: int, than: int) -> bool:
    """RTP timestamp order with wrap-around (serial-number arithmetic, half the space)."""
    return 0 < (timestamp - than) & _MASK32 < 0x80000000


class DtmfDetector:
    """Digits from the RFC 4733 event packets of one call, each key press exactly once.

    All packets of one press carry the RTP timestamp of its start (RFC 4733
    2.5.1.2), updates grow the duration and the end is sent three times
    (2.5.1.4). So a press is its timestamp: the first packet seen with a newer
    timestamp than the last press is a new press, whichever packet it is (the
    start, an update, or only the end when the others were lost); the digit is
    returned then and never again for that timestamp. Older timestamps are late
    packets of earlier presses and are ignored. A long press split into
    segments (2.5.1.3: the previous segment reported 65535 without the end bit,
    the next starts exactly 65535 samples later with the same event) stays one
    press. Payloads that do not parse raise RtpParseError; a new SSRC starts over.
    """

    def __init__(self) -> None:
        self._ssrc: int | None = None
        self._start: int | None = None  # timestamp of the press last reported
        self._event = -1
        self._segment_open = False  # the last segment reached 65535 without an end

    def feed(self, packet: RtpPacket) -> str | None:
        """The digit of a new key press in this packet, else None.

        Two or more characters only when a sender packs several presses into one packet.
        """
        events = TelephoneEvent.parse_all(packet.payload)
        if packet.ssrc != self._ssrc:
            self._ssrc, self._start, self._event = packet.ssrc, None, -1
            self._segment_open = False
        digits = ""
        start = packet.timestamp
        for event in events:  # 2.5.1.5: each event starts where the one before it ended
            digits += self._observe(start, event) or ""
            start = (start + event.duration) & _MASK32
        return digits or None

    def _observe(self, start: int, event: TelephoneEvent) -> str | None:
        if self._start is not None and not _newer(start, self._start):
            if start == self._start and event.event == self._event:
                self._segment_open = event.duration == MAX_EVENT_DURATION and not event.end
            return None  # a repeat or a late packet of a press already reported
        continues = (
            self._segment_open
            and event.event == self._event
            and self._start is not None
            and start == (self._start + MAX_EVENT_DURATION) & _MASK32
        )
        self._start, self._event = start, event.event
        self._segment_open = event.duration == MAX_EVENT_DURATION and not event.end
        return None if continues else digit_of(event.event)
