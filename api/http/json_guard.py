"""Decoding untrusted JSON (GraphQL bodies and WebSocket frames) without surprises.

``json.loads`` recurses once per nesting level and fails with RecursionError (a
500, or an abnormal close of the WebSocket) on deep input, guesses UTF-16 or
UTF-32 for bytes, reads NaN and Infinity (not JSON, RFC 8259 section 6), turns
1e999 into infinity and raises a plain ValueError for an integer over 4300
digits. Here nesting is measured first, in a few passes of C-level byte
operations (no Python loop per byte: the check runs on the event loop, before
anyone signed in), bytes must be UTF-8 (RFC 8259, section 8.1), and numbers
must be finite. The number of values is bounded too, by counting bytes: decoding
87,000 small lists holds the event loop for milliseconds per body, and twenty
such bodies queued up held other requests for seconds.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import operator
import re
from collections.abc import Iterator

# GraphQL variables here are flat objects and short lists; the query itself is a
# string and does not count. 64 is far above any real request.
MAX_DEPTH = 64

# Every array element and object member but the first of each follows a comma,
# the first its bracket, so commas plus openers bound the values from above
# (brackets and commas inside strings count too: an over-estimate, never an
# under-one). A body of 256 KiB holds up to 174,000 of them; what the website and
# the agent send holds a few thousand: a report of 2,000 events about 16,000, a
# list of 10,000 ids (the input guard's MAX_ITEMS, refused there with its own
# reason) 10,000. Decoding 25,000 takes about 1 ms.
MAX_VALUES = 25_000

# A JSON string, escapes included, matched left to right in one pass: every
# quote that starts a string ends the match at its closing quote or, unclosed, at
# the end of the input (a lone trailing backslash included). A pattern that can
# fail after reading to the end (the former one, on '"\"\"\"...') is tried again
# at every later quote: quadratic, 15 s for 64 KB.
_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
# Every byte but the four brackets goes; openers become '(' and closers ')'.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_TO_PARENS = bytes.maketrans(b"[]{}", b"()()")
_RUN = re.compile(rb"\(+|\)+")
# Passes of pair deletion before the loop over runs: each takes about a
# millisecond for 256 KiB; what is left after them is counted in one more pass.
_PEEL_PASSES = 6
# What the rest costs with either way of counting (measured, CPython 3.11).
_NS_PER_RUN, _NS_PER_BRACKET = 650, 85
_TO_STEPS = bytes.maketrans(b"()", b"\x02\x00")


class MalformedJSON(ValueError):
    """Raised when a payload is no JSON this service will read; the message says why."""


class TooManyValues(MalformedJSON):
    """Raised when a payload may hold more values than ``max_values`` (reason tooManyValues)."""

    reason = "tooManyValues"

    def __init__(self, max_values: int) -> None:
        super().__init__(f"the payload holds more than {max_values} values")
        self.max_values = max_values


def loads(
    data: str | bytes, max_depth: int = MAX_DEPTH, max_values: int | None = MAX_VALUES
) -> object:
    """The decoded value; MalformedJSON for invalid UTF-8, invalid JSON, deep
    nesting, or a number that is not finite or too long to read; TooManyValues
    past ``max_values`` (None: no bound, for a verified agent's body)."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a lenient decoder
            raise MalformedJSON("the payload is not valid UTF-8") from None
    else:
        raw = data
    if max_values is not None:
        check_values(raw, max_values)
    if isinstance(data, bytes):
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedJSON("the payload is not valid UTF-8") from None
    # Every level needs an opening bracket: few brackets, no scan needed.
    if raw.count(b"[") + raw.count(b"{") > max_depth and too_deep(raw, max_depth):
        raise MalformedJSON(f"the JSON is nested deeper than {max_depth} levels")
    try:
        with _no_cycle_collection():
            return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except MalformedJSON:
        raise
    except json.JSONDecodeError as err:
        raise MalformedJSON(f"the payload is not valid JSON ({err.msg})") from None
    except ValueError:  # int(): an integer over sys.get_int_max_str_digits() digits
        raise MalformedJSON("the payload holds a number too long to read") from None
    except RecursionError:  # unreachable after the depth check; kept as a last guard
        raise MalformedJSON("the JSON is nested too deeply") from None


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Decoded JSON holds no reference cycles, yet 87,000 small lists from one
    256 KiB body made the cycle collector run full collections over every object
    of the server: 100 ms instead of 5 for that body (bench/json_guard.py). The
    collector pauses for the decode; what it allocated is freed by reference
    counting once the request is done."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _refuse_constant(name: str) -> object:
    raise MalformedJSON(f"the payload is not valid JSON ({name} is no JSON number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedJSON("the payload holds a number out of range")
    return value


def check_values(raw: bytes, max_values: int = MAX_VALUES) -> None:
    """TooManyValues when ``raw`` may hold more than ``max_values`` values: three
    C-level counts, about 0.2 ms for 256 KiB, before anything is decoded."""
    if len(raw) > max_values and raw.count(b",") + raw.count(b"[") + raw.count(b"{") > max_values:
        raise TooManyValues(max_values)


def brackets(raw: bytes) -> bytes:
    """The brackets outside strings, openers as '(' and closers as ')'."""
    return _STRING.sub(b"", raw).translate(_TO_PARENS, _NOT_BRACKETS)


def too_deep(raw: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth``.

    Each pass deletes the innermost pairs '()' (C-level ``bytes.replace``), so
    after k passes every value k levels high or less is gone and the rest is k
    levels lower. A few passes take away the bulk (flat lists, many small
    values); the rest is counted once, by runs of equal brackets when they are
    few or else by C-level iterators, whichever is cheaper. Worst case about
    10 ms for 256 KiB (bench/json_guard.py). For balanced brackets the answer
    is exact; for unbalanced ones (invalid JSON) it may err towards "too deep".
    """
    level = brackets(raw)
    if b"(" * (max_depth + 1) in level:  # the common attack, found by one C-level search
        return True
    peeled_levels = 0
    for _ in range(min(_PEEL_PASSES, max_depth)):
        peeled = level.replace(b"()", b"")
        if len(peeled) == len(level):
            break
        level = peeled
        peeled_levels += 1
    budget = max_depth - peeled_levels
    runs = 2 * level.count(b")(") + 2
    if runs * _NS_PER_RUN < len(level) * _NS_PER_BRACKET:
        return _deepest_by_runs(level, budget) > budget
    return _deepest_by_bytes(level) > budget


def _deepest_by_runs(level: bytes, stop_above: int) -> int:
    """The highest running level, one Python step per run of equal brackets. An
    unmatched closer ends what json.loads reads, so the level never drops below 0."""
    running = 0
    for run in _RUN.finditer(level):
        if run.group()[0] == ord("("):
            running += run.end() - run.start()
            if running > stop_above:
                break
        else:
            running = max(0, running - (run.end() - run.start()))
    return running


def _deepest_by_bytes(level: bytes) -> int:
    """The highest running level, summed by C-level iterators (no bytecode per
    bracket): each '(' adds 2 and every bracket takes 1 off. Unmatched closers
    may take it below 0; json.loads stops reading at the first of them."""
    steps = itertools.accumulate(level.translate(_TO_STEPS))
    return max(map(operator.sub, steps, itertools.count(1)), default=0)


def depth(raw: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects (for tests and diagnostics: a
    Python loop per bracket; the guard itself uses ``too_deep``); with
    ``stop_above``, the count ends as soon as it passes that level."""
    deepest = level = 0
    for bracket in brackets(raw):
        if bracket == ord("("):
            level += 1
            deepest = max(deepest, level)
            if stop_above is not None and deepest > stop_above:
                break
        else:
            level -= 1
    return deepest
