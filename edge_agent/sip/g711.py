"""G.711 μ-law and A-law (ITU-T G.711) between 16-bit little-endian PCM and codes.

The tables are those of Sun's public-domain g711.c, which Python's former
`audioop` used: μ-law encodes the top 14 bits of a sample with a bias of 0x84
and clips at 8159 (14-bit), A-law encodes the top 13 bits; both invert bits
(μ-law all of them, A-law the even ones, ``^ 0x55``) so that silence is 0xFF
(μ-law) and 0xD5 (A-law) on the wire.

Everything is looked up in tables built once at import: a 65,536-entry `bytes`
per law indexed by the unsigned 16-bit sample, and the 256 decoded samples
split into low and high bytes so that decoding is two `bytes.translate` calls
and one interleave. Encoding a minute of audio (480,000 samples) takes a few
tens of milliseconds in pure Python; it is done once per announcement.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable

__all__ = ["alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # largest 14-bit magnitude μ-law represents
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for segment, end in enumerate(ends):
        if value <= end:
            return segment
    return len(ends)


def _ulaw_code(sample: int) -> int:
    """g711.c linear2ulaw for a signed 16-bit sample."""
    value = sample >> 2  # 14-bit
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(value, _ULAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_sample(code: int) -> int:
    """g711.c ulaw2linear."""
    code = ~code & 0xFF
    value = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - value if code & 0x80 else value - _ULAW_BIAS


def _alaw_code(sample: int) -> int:
    """g711.c linear2alaw for a signed 16-bit sample."""
    value = sample >> 3  # 13-bit
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    segment = _segment(value, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0x0F)) ^ mask


def _alaw_sample(code: int) -> int:
    """g711.c alaw2linear."""
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    elif segment == 1:
        value += 0x108
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


def _encode_table(code: Callable[[int], int], shift: int) -> bytes:
    """The code of every unsigned 16-bit sample; `code` only sees its top 16 - shift bits."""
    # One call per distinct top-bits value (16,384 for μ-law, 8,192 for A-law), each code
    # repeated 2**shift times by strided slice assignment; index 0x8000.. is -32768..-1.
    steps = 1 << shift
    codes = bytes(code(((top << shift) ^ 0x8000) - 0x8000) for top in range(0x10000 >> shift))
    table = bytearray(0x10000)
    for offset in range(steps):
        table[offset::steps] = codes
    return bytes(table)


def _decode_tables(sample: Callable[[int], int]) -> tuple[bytes, bytes]:
    values = [sample(code) & 0xFFFF for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


_ULAW_ENCODE = _encode_table(_ulaw_code, 2)
_ALAW_ENCODE = _encode_table(_alaw_code, 3)
_ULAW_LOW, _ULAW_HIGH = _decode_tables(_ulaw_sample)
_ALAW_LOW, _ALAW_HIGH = _decode_tables(_alaw_sample)
_BIG_ENDIAN = sys.byteorder == "big"


def _encode(pcm16le: bytes, table: bytes) -> bytes:
    if len(pcm16le) % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(pcm16le)}")
    samples = array("H", pcm16le)
    if _BIG_ENDIAN:
        samples.byteswap()
    return bytes(map(table.__getitem__, samples))


def _decode(data: bytes, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def ulaw_encode(pcm16le: bytes) -> bytes:
    """μ-law codes for signed 16-bit little-endian PCM, one byte per sample."""
    return _encode(pcm16le, _ULAW_ENCODE)


def ulaw_decode(data: bytes) -> bytes:
    """Signed 16-bit little-endian PCM for μ-law codes."""
    return _decode(data, _ULAW_LOW, _ULAW_HIGH)


def alaw_encode(pcm16le: bytes) -> bytes:
    """A-law codes for signed 16-bit little-endian PCM, one byte per sample."""
    return _encode(pcm16le, _ALAW_ENCODE)


def alaw_decode(data: bytes) -> bytes:
    """Signed 16-bit little-endian PCM for A-law codes."""
    return _decode(data, _ALAW_LOW, _ALAW_HIGH)
