"""The parts rewritten for linear time say what the old ones said (issue 15, the
outside review's ReDoS): `refusal.request_like` against the start-line pattern it
replaces, `addresses.split_quoted` against the character loop it had, on every short
string of the characters that matter (and many random longer ones).
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from edge_agent.sip.addresses import split_quoted
from edge_agent.sip.errors import SipParseError
from edge_agent.sip.refusal import request_like

# What refusal.py had: right, but quadratic on a run of LWS inside the line.
OLD_REQUEST_LIKE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+\S.*?[ \t]+SIP/([0-9]{1,3}\.[0-9]{1,3})[ \t]*"
)
OLD_QUOTED = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"')


def old_request_like(line: str) -> tuple[str, str] | None:
    match = OLD_REQUEST_LIKE.fullmatch(line)
    return None if match is None else (match.group(1), match.group(2))


def old_split_quoted(text: str, separator: str, *, angles: bool = False) -> list[str]:
    """addresses.split_quoted as it was: one character at a time."""
    if '"' not in text and not (angles and "<" in text):
        return text.split(separator)
    parts: list[str] = []
    start, i, depth = 0, 0, 0
    while i < len(text):
        char = text[i]
        if char == '"':
            match = OLD_QUOTED.match(text, i)
            if match is None:
                raise SipParseError("unterminated")
            i = match.end()
            continue
        if angles and char == "<":
            depth += 1
        elif angles and char == ">" and depth:
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if depth:
        raise SipParseError("unclosed")
    parts.append(text[start:])
    return parts


def outcome(call: object, *args: object, **kwargs: object) -> object:
    try:
        return call(*args, **kwargs)  # type: ignore[operator]
    except SipParseError:
        return "refused"


START_LINES = (
    "INVITE sip:a@b SIP/2.0",
    "INVITE  sip:a@b \t SIP/2.0 \t",
    "INVITE\tsip:a@b\tSIP/2.0",
    "INVITE sip:a@b SIP/7.0",
    "INVITE sip:a@b SIP/2.0 SIP/2.0",
    "INVITE sip:a@b",
    "INVITE SIP/2.0",
    " INVITE sip:a@b SIP/2.0",
    "INVITE \x0bsip:a@b SIP/2.0",
    "INVITE sip:a@b SIP/2.0\x0b",
    "INVITE sip:a\nb SIP/2.0",
    "IN:VITE sip:a@b SIP/2.0",
    "SIP/2.0 200 OK",
    "",
)


@pytest.mark.parametrize("line", START_LINES, ids=repr)
def test_request_like_says_what_the_pattern_said(line: str) -> None:
    assert request_like(line) == old_request_like(line)


def test_request_like_on_every_short_line() -> None:
    alphabet = ("A", " ", "\t", "x", "SIP/2.0", "SIP/1.1", "\x0b", ":")
    for length in range(1, 6):
        for pieces in itertools.product(alphabet, repeat=length):
            line = "".join(pieces)
            assert request_like(line) == old_request_like(line), repr(line)


def test_request_like_takes_no_line_past_the_bound() -> None:
    line = "OPTIONS " + "x" * 9000 + " SIP/2.0"
    assert old_request_like(line) is not None
    assert request_like(line) is None


SPLITS = (
    ('"Doe, John" <sip:a@b>, <sip:c@d>', ",", True),
    ("<sip:a@b;x=1,2>, <sip:c@d>", ",", True),
    ('<sip:a@b>;p="x,y", sip:c@d', ",", True),
    ('"a\\",b", c', ",", False),
    ('"a\\,b", c', ",", False),
    ("<<sip:a@b>, c", ",", True),
    ("<sip:a@b>>, c", ",", True),
    ('"unterminated, x', ",", True),
    ('a;b="c;d";e', ";", False),
    ('"x<y" <sip:a@b>', "<", False),
)


@pytest.mark.parametrize(("text", "separator", "angles"), SPLITS, ids=repr)
def test_split_quoted_says_what_the_loop_said(text: str, separator: str, angles: bool) -> None:
    expected = outcome(old_split_quoted, text, separator, angles=angles)
    assert outcome(split_quoted, text, separator, angles=angles) == expected


def test_split_quoted_on_every_short_text() -> None:
    alphabet = ('"', "\\", "<", ">", ",", ";", "a", " ", "\r")
    for length in range(1, 6):
        for pieces in itertools.product(alphabet, repeat=length):
            text = "".join(pieces)
            for separator, angles in ((",", True), (";", False), ("<", False)):
                old = outcome(old_split_quoted, text, separator, angles=angles)
                new = outcome(split_quoted, text, separator, angles=angles)
                assert new == old, (text, separator, angles)


def test_split_quoted_on_random_longer_texts() -> None:
    rng = random.Random(15)
    alphabet = '"\\<>,;a b'
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(6, 40)))
        for separator, angles in ((",", True), (";", False), ("<", False)):
            old = outcome(old_split_quoted, text, separator, angles=angles)
            assert outcome(split_quoted, text, separator, angles=angles) == old, text
