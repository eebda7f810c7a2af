"""Text that comes from the PBX, made safe to store and send: cleaned, never refused.

A PBX directory is typed in by people, over years, with tools that let anything
through. One name with a NUL (PostgreSQL refuses it), a lone surrogate (not
UTF-8) or a line break must not keep the whole directory, or any command that
carries it, from the central service. So each text is cleaned where it becomes
a `User` or `Group` (port.py), for every adapter: unsafe characters are
replaced, over-long texts cut to what the central mirror stores. Numbers and
ids are different: a changed number calls someone else and a changed id names
another entry, so those are kept as they are or not at all (a number only loses
the spaces and separators people write in it to read it).
"""

from __future__ import annotations

import unicodedata

# What the central mirror stores (api/models/pbx.py); the server cuts the same way.
NAME_MAX = 200
DESCRIPTION_MAX = 2000
EXTENSION_MAX = 32
ID_MAX = 64

REPLACEMENT = "\ufffd"
# Line breaks and tabs read as a space; other controls and lone surrogates become
# U+FFFD, so a reader sees that something was there.
_SPACES = {"\t", "\n", "\v", "\f", "\r", "\x85", "\u2028", "\u2029"}
_UNSAFE_CATEGORIES = {"Cc", "Cs"}
# Replaced too, as api/domain/validation.py refuses them: bidirectional controls make a
# text read otherwise than it is written; zero-width characters and the BOM hide in it.
_INVISIBLE = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u200e\u200f\ufeff"
)
# What a dialled number is made of; anything else (a letter) would call someone else.
_DIALABLE = frozenset("0123456789*#")
# How people write a number to read it ("+49 89 123-456", "(089) 12/34.5"): no part of
# what is dialled, so dropped, as are spaces of every kind (NBSP too).
_SEPARATORS = frozenset("-/.()")


def _character(c: str) -> str:
    if c in _SPACES:
        return " "
    if c in _INVISIBLE or unicodedata.category(c) in _UNSAFE_CATEGORIES:
        return REPLACEMENT
    return c


def clean(value: str, limit: int) -> str:
    """`value` with unsafe characters replaced, cut to `limit` characters."""
    if not value.isprintable():  # the fast path: almost every text is printable
        value = "".join(_character(c) for c in value)
    return value[:limit]


def usable_id(value: str) -> bool:
    """Whether a PBX id can be stored and sent as it is (it is never changed)."""
    return 0 < len(value) <= ID_MAX and value.isprintable()


def extension(value: str | None) -> str | None:
    """The number to dial, without the separators people write in it ("12 34" is 1234),
    or None when it cannot be one (a letter: dialled, it would call someone else)."""
    if value is None:
        return None
    # Spaces around it go as ever; inside it only spaces proper (category Zs, NBSP too):
    # a control or line break in the middle still makes it no number.
    value = value.strip()
    value = "".join(c for c in value if c not in _SEPARATORS and unicodedata.category(c) != "Zs")
    # A '+' only leads a number; it never stands alone.
    digits = value[1:] if value.startswith("+") else value
    if not digits or len(value) > EXTENSION_MAX or not _DIALABLE.issuperset(digits):
        return None
    return value
