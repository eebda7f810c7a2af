"""The telephony master: every accepted WAV kind decodes and converts; the rest is refused.

Unit tests, no I/O: `api.domain.audio` on WAV files built here byte by byte.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from array import array
from collections.abc import Sequence

import pytest

from api.domain import audio, resample, wav
from api.errors import BadInput

GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"".join(
        name + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
        for name, data in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def fmt(tag: int, channels: int, rate: int, bits: int, extensible: int | None = None) -> bytes:
    align = channels * bits // 8
    head = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if extensible is None:
        return head
    return head + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", extensible) + GUID_TAIL


def pcm16(samples: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def wav_file(frames: bytes, rate: int = 8000, channels: int = 1, bits: int = 16, tag: int = 1):
    return riff((b"fmt ", fmt(tag, channels, rate, bits)), (b"data", frames))


def samples_of(master: bytes) -> array[int]:
    parsed = wav.parse(master)
    assert (parsed.format, parsed.channels, parsed.rate, parsed.bits) == (wav.PCM, 1, 8000, 16)
    out = array("h")
    out.frombytes(parsed.data)
    return out


def convert(data: bytes, max_seconds: int = 300) -> audio.Converted:
    return audio.telephony_master(data, max_seconds)


def tone(rate: int, seconds: float, *parts: tuple[float, float]) -> list[int]:
    """Sum of (frequency, amplitude) sines."""
    return [
        round(sum(a * math.sin(2 * math.pi * f * i / rate) for f, a in parts))
        for i in range(int(rate * seconds))
    ]


def amplitude(samples: Sequence[int], frequency: float, rate: int = 8000) -> float:
    """Amplitude of one frequency, by correlation with a sine and a cosine."""
    w = 2 * math.pi * frequency / rate
    s = sum(x * math.sin(w * i) for i, x in enumerate(samples))
    c = sum(x * math.cos(w * i) for i, x in enumerate(samples))
    return 2 * math.hypot(s, c) / len(samples)


def rms(samples: Sequence[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples))


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-12))


def interleave(left: Sequence[int], right: Sequence[int]) -> list[int]:
    return [x for pair in zip(left, right, strict=True) for x in pair]


# --------------------------------------------------------------------------- what passes


def test_8khz_mono_16bit_passes_through_sample_exact():
    samples = [0, 1, -1, 32767, -32768, 12345, -54, *tone(8000, 0.5, (440, 20000))]
    data = wav_file(pcm16(samples))
    converted = convert(data)
    assert list(samples_of(converted.master_data)) == samples
    # A plain header and nothing else: the file is its own master, byte for byte.
    assert converted.master_data == data
    assert converted.is_master
    assert converted.original.format == "16-bit PCM, mono, 8000 Hz"


def test_a_master_with_extra_chunks_keeps_its_samples_in_a_plain_header():
    samples = tone(8000, 0.25, (1000, 9000))
    data = riff(
        (b"fmt ", fmt(1, 1, 8000, 16)),
        (b"LIST", b"INFOISFT\x05\x00\x00\x00Lavf\x00\x00"),
        (b"data", pcm16(samples)),
    )
    converted = convert(data)
    assert list(samples_of(converted.master_data)) == samples
    assert not converted.is_master
    assert len(converted.master_data) == 44 + 2 * len(samples)


def test_48khz_stereo_tone_keeps_its_frequency_and_level():
    left = tone(48000, 1.0, (1000, 12000))
    data = wav_file(pcm16(interleave(left, left)), rate=48000, channels=2)
    converted = convert(data)
    out = samples_of(converted.master_data)
    assert len(out) == 8000
    assert converted.master.duration_ms == converted.original.duration_ms == 1000
    middle = out[400:-400]  # away from the edges, where the filter meets silence
    assert abs(db(amplitude(middle, 1000) / 12000)) < 0.05
    # The same frequency: the sine crosses zero twice a cycle, 2000 times a second.
    crossings = sum(1 for a, b in itertools.pairwise(middle) if (a < 0) != (b < 0))
    assert abs(crossings / (len(middle) / 8000) - 2000) < 5
    # Nothing else: the residue after the 1 kHz sine is at the level of rounding.
    fitted = tone(8000, 1.0, (1000, 12000))[400:-400]
    assert max(abs(a - b) for a, b in zip(middle, fitted, strict=True)) < 0.02 * 12000


def test_a_6khz_tone_does_not_alias_into_the_telephone_band():
    # 6 kHz at 48 kHz would fold to 2 kHz at 8 kHz without the low-pass.
    high = tone(48000, 1.0, (6000, 16000))
    data = wav_file(pcm16(interleave(high, high)), rate=48000, channels=2)
    out = samples_of(convert(data).master_data)[400:-400]
    assert db(amplitude(out, 2000) / 16000) < -60  # the requirement is -30 dB
    assert db(rms(out) / rms(high)) < -60


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 32000, 44100, 96000, 44099])
def test_other_rates_keep_the_tone_and_drop_what_would_alias(rate):
    above = min(rate // 2 - 500, 6000)  # above 4.6 kHz, below the input's Nyquist
    data = wav_file(pcm16(tone(rate, 1.0, (700, 8000), (above, 8000))), rate=rate)
    out = samples_of(convert(data).master_data)
    # 44099 Hz is resampled by the nearest ratio with few phases: a few samples more or less.
    assert abs(len(out) - 8000) <= (3 if rate == 44099 else 0)
    middle = out[400:-400]
    assert abs(db(amplitude(middle, 700) / 8000)) < 0.1
    assert db(amplitude(middle, 8000 - above) / 8000) < -60


def test_stereo_becomes_the_mean_of_both_channels_rounded():
    left = [100, -100, 32767, -32768, 1, 0]
    right = [300, -301, 32767, -32768, 2, -1]
    data = wav_file(pcm16(interleave(left, right)), channels=2)
    assert list(samples_of(convert(data).master_data)) == [200, -200, 32767, -32768, 2, 0]


def test_8bit_pcm_is_unsigned_and_scaled_to_16_bits():
    data = wav_file(bytes([0, 1, 127, 128, 129, 255]), bits=8)
    assert list(samples_of(convert(data).master_data)) == [
        -32768,
        -32512,
        -256,
        0,
        256,
        32512,
    ]


def test_24_and_32bit_pcm_keep_their_top_16_bits():
    values = [0, 256, -256, 0x7FFFFF, -0x800000, 0x123456, -0x123456]
    data24 = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    data32 = b"".join((v << 8).to_bytes(4, "little", signed=True) for v in values)
    expected = [v >> 8 for v in values]
    assert list(samples_of(convert(wav_file(data24, bits=24)).master_data)) == expected
    assert list(samples_of(convert(wav_file(data32, bits=32)).master_data)) == expected


def test_wave_format_extensible_with_pcm_decodes_like_plain_pcm():
    samples = tone(16000, 0.2, (500, 10000))
    frames = pcm16(interleave(samples, samples))
    plain = wav_file(frames, rate=16000, channels=2)
    extensible = riff((b"fmt ", fmt(0xFFFE, 2, 16000, 16, extensible=1)), (b"data", frames))
    assert convert(extensible).master_data == convert(plain).master_data


# Reference values: ITU-T G.711 as Sun's g711.c (and CPython's audioop) decode them.
MULAW = {
    0x00: -32124,
    0x0F: -16764,
    0x35: -3260,
    0x7E: -8,
    0x7F: 0,
    0x80: 32124,
    0xA3: 7164,
    0xEF: 132,
    0xFE: 8,
    0xFF: 0,
}
ALAW = {
    0x00: -5504,
    0x2A: -32256,
    0x55: -8,
    0x7F: -848,
    0x80: 5504,
    0xAA: 32256,
    0xD5: 8,
    0xFF: 848,
    0x5A: -248,
    0xF0: 688,
}


@pytest.mark.parametrize(
    ("tag", "table"), [(wav.MULAW, MULAW), (wav.ALAW, ALAW)], ids=["mu-law", "A-law"]
)
def test_g711_wav_decodes_to_the_right_samples(tag, table):
    data = wav_file(bytes(table), bits=8, tag=tag)
    converted = convert(data)
    assert list(samples_of(converted.master_data)) == list(table.values())
    assert converted.original.format == ("μ-law" if tag == wav.MULAW else "A-law") + (
        ", mono, 8000 Hz"
    )


def test_g711_in_wave_format_extensible_and_in_stereo():
    codes = bytes(MULAW)
    frames = bytes(b for pair in zip(codes, codes, strict=True) for b in pair)
    data = riff((b"fmt ", fmt(0xFFFE, 2, 8000, 8, extensible=wav.MULAW)), (b"data", frames))
    assert list(samples_of(convert(data).master_data)) == list(MULAW.values())


def test_sound_louder_than_16_bits_after_filtering_is_clipped_not_wrapped():
    # A full-scale square wave overshoots after the low-pass (Gibbs).
    square = [32767 if (i // 96) % 2 else -32768 for i in range(48000)]  # 250 Hz
    out = samples_of(convert(wav_file(pcm16(square), rate=48000)).master_data)
    assert max(out) == 32767 and min(out) == -32768
    # No wrap-around: each half period (16 samples at 8 kHz) keeps the square wave's sign.
    for k in range(1, 499):
        half = out[16 * k + 2 : 16 * k + 14]
        assert all(x > 0 for x in half) if k % 2 else all(x < 0 for x in half), k


def test_five_minutes_of_48khz_stereo_convert_within_seconds():
    second = pcm16(interleave(tone(48000, 1.0, (440, 8000)), tone(48000, 1.0, (660, 8000))))
    data = wav_file(second * 300, rate=48000, channels=2)
    start = time.perf_counter()
    converted = convert(data)
    took = time.perf_counter() - start
    assert converted.master.duration_ms == 300_000
    assert took < 10, f"{took:.1f} s"  # about 1.5 s on the development machine


def test_the_taps_of_each_phase_sum_to_exactly_one():
    for rate, channels in ((48000, 1), (44100, 2), (8000, 2)):
        p = resample.plan(rate, 8000, channels)
        sums = [0] * p.up
        for _, kernels in p.kernels:
            for r, kernel in kernels:
                # Unpack the 40-bit signed slots of the kernel.
                while kernel:
                    slot = kernel & ((1 << 40) - 1)
                    slot -= (1 << 40) if slot >> 39 else 0
                    sums[r] += slot
                    kernel = (kernel - slot) >> 40
        assert sums == [65536 // channels] * p.up


# --------------------------------------------------------------------------- what is refused


def refused(data: bytes, max_seconds: int = 300) -> str:
    with pytest.raises(BadInput) as info:
        convert(data, max_seconds)
    assert info.value.details == {"field": "file"}
    return info.value.message


ONE_SECOND = pcm16([0] * 8000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(b"ID3\x04" + bytes(100), "not a WAV file (no RIFF/WAVE header)", id="an MP3"),
        pytest.param(
            b"RIFF\x24\x00\x00\x00AVI LIST", "not a WAV file (no RIFF/WAVE header)", id="an AVI"
        ),
        pytest.param(riff((b"data", ONE_SECOND)), "not a WAV file (no fmt chunk)", id="no fmt"),
        pytest.param(
            riff((b"fmt ", fmt(1, 1, 8000, 16))), "the WAV has no data chunk", id="no data"
        ),
        pytest.param(
            riff((b"fmt ", fmt(1, 1, 8000, 16)[:14]), (b"data", ONE_SECOND)),
            "the fmt chunk is too short",
            id="short fmt",
        ),
        pytest.param(
            wav_file(ONE_SECOND, tag=0x55),
            "MP3 WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="MP3 in WAV",
        ),
        pytest.param(
            wav_file(ONE_SECOND, tag=0x02),
            "Microsoft ADPCM WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="ADPCM",
        ),
        pytest.param(
            wav_file(ONE_SECOND, tag=0x03, bits=32),
            "32-bit float WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="float",
        ),
        pytest.param(
            wav_file(ONE_SECOND, tag=0x1234),
            "format 0x1234 WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="unknown tag",
        ),
        pytest.param(
            riff((b"fmt ", fmt(0xFFFE, 1, 8000, 16, extensible=1)[:-1] + b"X"), (b"data", b"")),
            "WAVE_FORMAT_EXTENSIBLE with an unknown subformat",
            id="extensible, other GUID",
        ),
        pytest.param(
            riff((b"fmt ", fmt(0xFFFE, 1, 8000, 16, extensible=3)), (b"data", ONE_SECOND)),
            "32-bit float WAV is not accepted; save it as PCM, A-law or μ-law WAV",
            id="extensible float",
        ),
        pytest.param(
            wav_file(bytes(12000), bits=12),
            "12-bit PCM is not accepted (8, 16, 24 or 32 bit)",
            id="12 bit",
        ),
        pytest.param(
            wav_file(ONE_SECOND, tag=wav.MULAW), "μ-law with 16 bits a sample (not 8)", id="wide"
        ),
        pytest.param(
            wav_file(bytes(6 * 100), channels=3),
            "3 channels; only mono or stereo is accepted",
            id="3 channels",
        ),
        pytest.param(
            wav_file(ONE_SECOND, rate=4000),
            "sample rate 4000 Hz not supported (8000 to 192000)",
            id="4 kHz",
        ),
        pytest.param(
            wav_file(ONE_SECOND, rate=384000),
            "sample rate 384000 Hz not supported (8000 to 192000)",
            id="384 kHz",
        ),
        pytest.param(
            riff(
                (b"fmt ", fmt(1, 1, 8000, 16)[:12] + struct.pack("<HH", 4, 16)),
                (b"data", ONE_SECOND),
            ),
            "the fmt chunk contradicts itself (block align 4)",
            id="bad block align",
        ),
        pytest.param(wav_file(b""), "the recording holds no sound", id="zero frames"),
        pytest.param(
            wav_file(ONE_SECOND)[:-100],
            "the file ends before its sound does (truncated WAV)",
            id="truncated",
        ),
        pytest.param(
            wav_file(ONE_SECOND)[:44],
            "the file ends before its sound does (truncated WAV)",
            id="header only",
        ),
        pytest.param(
            wav_file(ONE_SECOND + b"\x01"),
            "the data chunk ends inside a frame (truncated WAV)",
            id="half a frame",
        ),
    ],
)
def test_it_refuses_with_the_reason(data, reason):
    assert refused(data) == reason


def test_it_refuses_a_recording_over_the_length_limit():
    assert refused(wav_file(ONE_SECOND * 3 + pcm16([0])), max_seconds=3) == "longer than 3 s"
    assert convert(wav_file(ONE_SECOND * 3), max_seconds=3).master.duration_ms == 3000
    # The limit counts the sound, not the bytes: 3 s at 48 kHz stereo pass.
    stereo = wav_file(bytes(4 * 48000 * 3), rate=48000, channels=2)
    assert convert(stereo, max_seconds=3).master.duration_ms == 3000


def test_it_refuses_a_sound_too_short_for_one_telephony_sample():
    assert (
        refused(wav_file(pcm16([5] * 5), rate=48000))
        == "the recording is shorter than one telephony sample"
    )
