"""RIFF/WAVE files: reading the header, splitting the samples, writing a master.

Python's `wave` module reads plain PCM only (3.11 not even WAVE_FORMAT_EXTENSIBLE)
and `audioop`, which decoded G.711, is deprecated; so the chunks are read here.
Samples leave as offset binary (sample + 32768) split into low and high bytes:
for PCM that is a strided slice of the file plus one byte translation, for
A-law and μ-law two table look-ups (`bytes.translate`), all at C speed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from api.domain.resample import Channel
from api.errors import BadInput

PCM, ALAW, MULAW, EXTENSIBLE = 0x0001, 0x0006, 0x0007, 0xFFFE
MIN_RATE, MAX_RATE = 8000, 192000
# The GUID of a KSDATAFORMAT_SUBTYPE after its first two bytes (the format tag).
_SUBTYPE_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0003: "32-bit float",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
}
_FLIP = bytes(b ^ 0x80 for b in range(256))  # two's complement <-> offset binary


def _mulaw(code: int) -> int:
    """ITU-T G.711 μ-law to 16-bit linear, as Sun's reference g711.c decodes it."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return 0x84 - t if u & 0x80 else t - 0x84


def _alaw(code: int) -> int:
    """ITU-T G.711 A-law to 16-bit linear (even bits inverted; the sign bit set is positive)."""
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    segment = (a >> 4) & 0x07
    t = t + 8 if segment == 0 else (t + 0x108) << (segment - 1)
    return t if a & 0x80 else -t


def _tables(decode: Callable[[int], int]) -> tuple[bytes, bytes]:
    values = [decode(code) + 32768 for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


G711 = {MULAW: _tables(_mulaw), ALAW: _tables(_alaw)}
_FORMAT_NAMES = {PCM: "PCM", ALAW: "A-law", MULAW: "μ-law"}


@dataclass(frozen=True)
class Wav:
    format: int  # PCM, ALAW or MULAW
    channels: int
    rate: int
    bits: int  # of each sample's container
    data: bytes  # the frames

    @property
    def frames(self) -> int:
        return len(self.data) // (self.channels * self.bits // 8)

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.rate

    @property
    def description(self) -> str:
        depth = f"{self.bits}-bit " if self.format == PCM else ""
        layout = {1: "mono", 2: "stereo"}[self.channels]
        return f"{depth}{_FORMAT_NAMES[self.format]}, {layout}, {self.rate} Hz"

    def split(self) -> list[Channel]:
        """Each channel as (low bytes, high bytes) of its samples in offset binary.

        24- and 32-bit samples keep their top 16 bits (the master has 16).
        """
        step = self.channels * self.bits // 8
        width = self.bits // 8
        out: list[Channel] = []
        for c in range(self.channels):
            if self.format in G711:
                low_table, high_table = G711[self.format]
                codes = self.data[c::step]
                out.append((codes.translate(low_table), codes.translate(high_table)))
            elif width == 1:  # unsigned 8-bit is offset binary already
                high = self.data[c::step]
                out.append((bytes(len(high)), high))
            else:
                first = c * width + width - 2
                low = self.data[first::step]
                out.append((low, self.data[first + 1 :: step].translate(_FLIP)))
        return out


def _bad(reason: str) -> BadInput:
    return BadInput(reason, field="file")


def parse(data: bytes) -> Wav:
    """The WAV's format and frames; BadInput with the reason when it cannot be decoded."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _bad("not a WAV file (no RIFF/WAVE header)")
    fmt: bytes | None = None
    sound: bytes | None = None
    view = memoryview(data)  # only the chunks kept are copied
    pos = 12
    while pos + 8 <= len(data) and (fmt is None or sound is None):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = view[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            fmt = bytes(body)
        elif chunk == b"data":
            if len(body) < size:
                raise _bad("the file ends before its sound does (truncated WAV)")
            sound = bytes(body)
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise _bad("not a WAV file (no fmt chunk)")
    if sound is None:
        raise _bad("the WAV has no data chunk")
    wav = _format(fmt, sound)
    if len(sound) % (wav.channels * wav.bits // 8):
        raise _bad("the data chunk ends inside a frame (truncated WAV)")
    if wav.frames == 0:
        raise _bad("the recording holds no sound")
    return wav


def _format(fmt: bytes, sound: bytes) -> Wav:
    if len(fmt) < 16:
        raise _bad("the fmt chunk is too short")
    tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _SUBTYPE_TAIL:
            raise _bad("WAVE_FORMAT_EXTENSIBLE with an unknown subformat")
        tag = int.from_bytes(fmt[24:26], "little")
    if tag not in _FORMAT_NAMES:
        name = _NAMES.get(tag, f"format {tag:#06x}")
        raise _bad(f"{name} WAV is not accepted; save it as PCM, A-law or μ-law WAV")
    if tag == PCM and bits not in (8, 16, 24, 32):
        raise _bad(f"{bits}-bit PCM is not accepted (8, 16, 24 or 32 bit)")
    if tag != PCM and bits != 8:
        raise _bad(f"{_FORMAT_NAMES[tag]} with {bits} bits a sample (not 8)")
    if channels not in (1, 2):
        raise _bad(f"{channels} channels; only mono or stereo is accepted")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _bad(f"sample rate {rate} Hz not supported ({MIN_RATE} to {MAX_RATE})")
    if align != channels * bits // 8:
        raise _bad(f"the fmt chunk contradicts itself (block align {align})")
    return Wav(tag, channels, rate, bits, sound)


def master(samples: bytes, rate: int = 8000) -> bytes:
    """A canonical WAV (44-byte header) of mono signed 16-bit little-endian samples."""
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(samples),
        b"WAVE",
        b"fmt ",
        16,
        PCM,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        len(samples),
    )
    return header + samples
