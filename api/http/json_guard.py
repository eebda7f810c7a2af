"""Decoding untrusted JSON (GraphQL bodies and WebSocket frames) without surprises.

``json.loads`` recurses once per nesting level and fails with RecursionError (a
500, or an abnormal close of the WebSocket) on deep input, and it guesses UTF-16
or UTF-32 for bytes. Here nesting is measured first, without recursion, and
bytes must be UTF-8 (RFC 8259, section 8.1).
"""

from __future__ import annotations

import json
import re

# GraphQL variables here are flat objects and short lists; the query itself is a
# string and does not count. 64 is far above any real request.
MAX_DEPTH = 64

# A JSON string (escapes included); the bracket count ignores what is inside one.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class MalformedJSON(ValueError):
    """Raised when a payload is no JSON this service will read; the message says why."""


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> object:
    """The decoded value; MalformedJSON for invalid UTF-8, invalid JSON or deep nesting."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a lenient decoder
            raise MalformedJSON("the payload is not valid UTF-8") from None
    else:
        raw = data
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedJSON("the payload is not valid UTF-8") from None
    # Every level needs an opening bracket: few brackets, no scan needed.
    if raw.count(b"[") + raw.count(b"{") > max_depth and depth(raw, max_depth) > max_depth:
        raise MalformedJSON(f"the JSON is nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise MalformedJSON(f"the payload is not valid JSON ({err.msg})") from None
    except RecursionError:  # unreachable after the depth check; kept as a last guard
        raise MalformedJSON("the JSON is nested too deeply") from None


def depth(raw: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects, counted without recursion;
    with ``stop_above``, the count ends as soon as it passes that level."""
    deepest = level = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if bracket.group() in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
            if stop_above is not None and deepest > stop_above:
                break
        else:
            level -= 1
    return deepest
