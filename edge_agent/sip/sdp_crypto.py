"""SDES keys in SDP (RFC 4568): our `a=crypto` line and the peer's, parsed and checked.

Only AES_CM_128_HMAC_SHA1_80 (RFC 4568 6.2.1, the suite every SIP phone and PBX
offers first) is spoken. A crypto line we cannot use (another suite, an MKI, a
session parameter we do not know, a key of the wrong size) is skipped, never half
used; an answer left without a usable one means no SRTP (`Call` decides what that
means for the call, docs/decisions/srtp.md).

Pure: text in, keys out. Keys never appear in an error or a repr: the texts here
name the line's tag and suite at most.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "KEY_BYTES",
    "MAX_LINES",
    "SUITE",
    "SdesKey",
    "answer_key",
    "format_line",
    "offer_key",
    "parse_line",
]

SUITE = "AES_CM_128_HMAC_SHA1_80"
KEY_BYTES = 30  # a 16-byte master key and a 14-byte master salt (RFC 4568 6.2.1)
# At most this many a=crypto lines of one stream are looked at: a peer offers one per
# suite it has (a handful), never hundreds.
MAX_LINES = 16
# The peer's key may live this many packets at least (RFC 4568 6.1 lifetime); our calls
# last minutes (at 50 packets a second, 2^20 packets are almost six hours).
MIN_LIFETIME = 2**20

_TAG = re.compile(r"[0-9]{1,9}")
_SUITE = re.compile(r"[A-Za-z0-9_]{1,64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{40}")  # 30 bytes, no padding needed
_LIFETIME = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,20}))")
# Window Size Hint (RFC 4568 6.3.7) is only a hint; every other session parameter
# changes how packets are protected, which libsrtp here is not set up for.
_HINTS = re.compile(r"WSH=[0-9]{1,9}")


@dataclass(frozen=True)
class SdesKey:
    """A usable crypto line: its tag and its master key with salt (hidden from repr)."""

    tag: int
    key: bytes = field(repr=False)


def format_line(tag: int, key: bytes) -> str:
    """The value of our ``a=crypto:`` line (what follows the colon)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"an SDES key of {SUITE} has {KEY_BYTES} bytes")
    return f"{tag} {SUITE} inline:{base64.b64encode(key).decode()}"


def parse_line(value: str) -> SdesKey | None:
    """The tag and key of one ``a=crypto:`` value when we can use it, else None.

    None for another suite, a line with more than one key, an MKI, a lifetime under
    MIN_LIFETIME packets, a session parameter other than WSH, or anything malformed.
    """
    parts = value.split()
    if len(parts) < 3 or not _TAG.fullmatch(parts[0]) or not _SUITE.fullmatch(parts[1]):
        return None
    if parts[1] != SUITE or not all(_HINTS.fullmatch(p) for p in parts[3:]):
        return None
    method, _, params = parts[2].partition(":")
    if method != "inline" or ";" in params:  # several keys only come with MKIs
        return None
    key_salt, *rest = params.split("|")
    if len(rest) > 1 or (rest and not _lifetime_ok(rest[0])):
        return None  # an MKI ("1:4"), or a lifetime too short for a call
    if not _BASE64.fullmatch(key_salt):  # 30 bytes are 40 characters, never padded
        return None
    try:
        key = base64.b64decode(key_salt, validate=True)
    except (binascii.Error, ValueError):
        return None
    return SdesKey(int(parts[0]), key)


def _lifetime_ok(text: str) -> bool:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        return False  # also "1:4", an MKI without a lifetime
    power, number = match.groups()
    packets = 2 ** int(power) if power is not None else int(number)
    return packets >= MIN_LIFETIME


def answer_key(values: Iterable[str], offered_tag: int) -> SdesKey | None:
    """The peer's key from an answer's crypto lines: the one with the tag we offered
    (RFC 4568 5.1.2: the answer names the offer's tag), if usable."""
    for value in _bounded(values):
        parsed = parse_line(value)
        if parsed is not None and parsed.tag == offered_tag:
            return parsed
    return None


def offer_key(values: Iterable[str]) -> SdesKey | None:
    """The first usable key of an offer's crypto lines (a re-INVITE's), whose tag our
    answer then names."""
    for value in _bounded(values):
        parsed = parse_line(value)
        if parsed is not None:
            return parsed
    return None


def _bounded(values: Iterable[str]) -> list[str]:
    return list(values)[:MAX_LINES]
