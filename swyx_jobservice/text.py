"""The texts of a request body: what the PBX shows is cleaned, what addresses is checked.

What the routing script sends ends up in job files, the agent's broadcast reports and the
central service's database, which refuses NUL; a lone surrogate (JSON's "\\ud800" decodes
to one) is no UTF-8 at all.

Two kinds of text, two rules (issue 14, point 1 and its review):
- A caller's name and number come from the PBX, as people typed them: they are only shown.
  Refusing the job for a tab in a name would cost the alarm (the routing script reads a
  400 as final and tells the caller it failed), so they are cleaned and cut, never refused
  (`shown`). The rule is the agent's (edge_agent/pbx/text.py); this package imports nothing
  of theirs.
- What addresses something (the agent's number, a group id, a recording's path) is changed
  by no cleaning: a cleaned id names nothing, so it is checked and refused with the code
  invalidText (`checked_text`). The routing script builds those from its own settings.
"""

from __future__ import annotations

import re
import unicodedata

from swyx_jobservice.errors import BadRequest

INVALID_TEXT = "invalidText"
REPLACEMENT = "\ufffd"
CUT = "\u2026"  # ends a text that was cut, so nobody reads it as whole
# C0, DEL and C1: nothing the routing script sends spans lines or carries terminal codes.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")
# Read as a space: tab, line breaks, NEL and the Unicode line/paragraph separators.
_SPACES = frozenset("\t\n\v\f\r\x85\u2028\u2029")
# Replaced as well: they make a text read otherwise than it is written (bidirectional
# controls, as api/domain/validation.py refuses them) or hide in it (zero-width, BOM).
_INVISIBLE = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u200e\u200f\ufeff"
)


def _character(c: str) -> str:
    if c in _SPACES:
        return " "
    if c in _INVISIBLE or unicodedata.category(c) in ("Cc", "Cs"):
        return REPLACEMENT
    return c


def shown(value: str, max_len: int) -> str:
    """A text that is only shown, made safe: controls, lone surrogates and invisible
    characters replaced (line breaks and tabs by a space), cut to `max_len` characters
    with an ellipsis at the end when it was longer. Never refused."""
    if not value.isprintable():  # the fast path: almost every text is printable
        value = "".join(_character(c) for c in value)
    if len(value) > max_len:
        value = value[: max_len - 1] + CUT
    return value


def usable_id(value: str, max_len: int) -> bool:
    """Whether a text that names something can be used as it is (it is never changed)."""
    return (
        0 < len(value) <= max_len and not _CONTROLS.search(value) and not _SURROGATES.search(value)
    )


def checked_text(value: str, name: str, max_len: int) -> str:
    """`value` unless it is longer than `max_len` characters, holds a control character or
    a lone surrogate: then a BadRequest with the code invalidText naming `name`."""
    if len(value) > max_len:
        raise BadRequest(f"{name} is longer than {max_len} characters", name, code=INVALID_TEXT)
    if _CONTROLS.search(value):
        raise BadRequest(f"{name} contains control characters", name, code=INVALID_TEXT)
    if _SURROGATES.search(value):
        raise BadRequest(f"{name} is not valid Unicode (a lone surrogate)", name, code=INVALID_TEXT)
    return value
