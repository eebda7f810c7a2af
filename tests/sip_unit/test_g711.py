"""G.711 against the values of Sun's g711.c (the tables Python's audioop used)."""

from __future__ import annotations

import hashlib
import math
import struct

import pytest

from edge_agent.sip.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))
ALL_CODES = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 2}h", data)


def test_silence_is_0xff_in_ulaw_and_0xd5_in_alaw():
    assert ulaw_encode(pcm(0)) == b"\xff"
    assert alaw_encode(pcm(0)) == b"\xd5"


def test_it_encodes_known_samples_as_g711_c_does():
    assert ulaw_encode(pcm(0, -1, 1, 32767, -32768, 1000, -1000)).hex() == "ff7eff8000ce4e"
    assert alaw_encode(pcm(0, -1, 1, 32767, -32768, 1000, -1000)).hex() == "d555d5aa2afa7a"


def test_it_decodes_known_codes_as_g711_c_does():
    assert samples(ulaw_decode(bytes([0x00, 0x7F, 0x80, 0xFF, 0xCE]))) == (
        -32124,
        0,
        32124,
        0,
        988,
    )
    assert samples(alaw_decode(bytes([0x55, 0xD5, 0x2A, 0xAA, 0xFA]))) == (
        -8,
        8,
        -32256,
        32256,
        1008,
    )


def test_every_sample_encodes_like_audioop():
    # sha256 of audioop.lin2ulaw / lin2alaw over all 65,536 samples (Python 3.11).
    assert (
        hashlib.sha256(ulaw_encode(ALL_SAMPLES)).hexdigest()
        == "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
    )
    assert (
        hashlib.sha256(alaw_encode(ALL_SAMPLES)).hexdigest()
        == "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b"
    )


def test_every_code_decodes_like_audioop():
    # sha256 of audioop.ulaw2lin / alaw2lin over the 256 codes, width 2.
    assert (
        hashlib.sha256(ulaw_decode(ALL_CODES)).hexdigest()
        == "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
    )
    assert (
        hashlib.sha256(alaw_decode(ALL_CODES)).hexdigest()
        == "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174"
    )


def test_every_alaw_code_survives_decode_and_encode():
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


def test_every_ulaw_code_survives_decode_and_encode_but_negative_zero():
    back = ulaw_encode(ulaw_decode(ALL_CODES))
    assert [c for c in range(256) if back[c] != c] == [0x7F]
    assert back[0x7F] == 0xFF  # -0 and +0 both decode to 0, which encodes as +0


@pytest.mark.parametrize(
    ("encode", "decode", "peak"),
    [(ulaw_encode, ulaw_decode, 32124), (alaw_encode, alaw_decode, 32256)],
    ids=["ulaw", "alaw"],
)
def test_the_quantisation_error_stays_within_a_32nd_plus_8(encode, decode, peak):
    back = samples(decode(encode(ALL_SAMPLES)))
    for sample, decoded in zip(range(-32768, 32768), back, strict=True):
        if abs(sample) <= peak:
            assert abs(decoded - sample) <= abs(sample) / 32 + 8, sample
        else:  # beyond the largest code: clipped to it
            assert decoded == math.copysign(peak, sample)


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_a_tone_comes_back_with_better_than_30_db_snr(encode, decode):
    tone = [round(8000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(8000)]
    back = samples(decode(encode(pcm(*tone))))
    noise = sum((a - b) ** 2 for a, b in zip(tone, back, strict=True))
    signal = sum(a * a for a in tone)
    assert 10 * math.log10(signal / noise) > 30


def test_it_rejects_an_odd_number_of_pcm_bytes():
    with pytest.raises(ValueError, match=r"^16-bit PCM needs an even number of bytes, got 3$"):
        ulaw_encode(b"\x00\x00\x00")
    with pytest.raises(ValueError, match=r"^16-bit PCM needs an even number of bytes, got 1$"):
        alaw_encode(b"\x00")


def test_empty_input_gives_empty_output():
    assert ulaw_encode(b"") == alaw_encode(b"") == ulaw_decode(b"") == alaw_decode(b"") == b""
