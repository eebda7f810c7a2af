"""The SIP stack's errors, one rooted hierarchy."""

from __future__ import annotations


class SipError(Exception):
    """Raised for any failure of the SIP stack."""


class SipParseError(SipError, ValueError):
    """Raised when bytes are not a well-formed SIP message; the text says what is wrong."""


class SipVersionError(SipParseError):
    """Raised for a request line of another SIP version: answered 505, not 400."""


class SdpError(SipError, ValueError):
    """Raised when a session description cannot be parsed or offers nothing we can use."""


class RtpParseError(SipError, ValueError):
    """Raised when a datagram is not an RTP packet (or not an RFC 4733 event)."""


class DigestError(SipError, ValueError):
    """Raised when a digest challenge cannot be parsed or answered (unknown algorithm)."""


class DialogInfoError(SipError, ValueError):
    """Raised when a dialog-info document (RFC 4235) is malformed, hostile or too large."""
