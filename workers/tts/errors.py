"""Errors of text-to-speech."""

from __future__ import annotations


class SynthesisError(Exception):
    """Raised when an engine cannot speak a text; the message is shown to the user as the reason."""
