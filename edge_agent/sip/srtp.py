"""SRTP (RFC 3711) for one call's audio, keyed by SDES (RFC 4568), through libsrtp.

libsrtp comes with `pylibsrtp` (its wheels carry the library for Windows and Linux;
docs/decisions/srtp.md). A call's `CallCrypto` holds the installation's choice
(`Mode`), the key we offer (new for every call, from `secrets`), and once the
answer brings the peer's key the two libsrtp sessions: ours protects every packet
the pacer builds (`protect`), the peer's authenticates and decrypts every packet
that comes in before anything reads it (`unprotect`; a packet that fails, forged
or replayed, is dropped and counted).

Modes (the setting ``RUNDRUF_AGENT_SIP_SRTP``):

- ``off``: plain RTP/AVP, no crypto line; an answer in RTP/SAVP is refused.
- ``optional``: RTP/AVP with our crypto line (best-effort SDES, as Asterisk,
  FreeSWITCH and baresip's ``mediaenc=srtp`` offer it): a peer that answers with
  a usable key gets SRTP, one that ignores the line plain RTP.
- ``required``: RTP/SAVP with our crypto line only; an answer without a usable key
  ends the call (`SrtpRequired`) before a single packet is sent.

The agent sends no RTCP and opens no RTCP port, so there is no SRTCP to protect.
Keys never reach a log line, an error text or a repr.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

from edge_agent.sip import sdp_crypto
from edge_agent.sip.errors import SdpError
from edge_agent.sip.sdp_crypto import KEY_BYTES

__all__ = ["MODES", "CallCrypto", "Mode", "SrtpRequired", "SrtpStreams", "new_key"]

Mode = Literal["off", "optional", "required"]
MODES: tuple[Mode, ...] = ("off", "optional", "required")
SECURE_PROTOCOLS = ("RTP/SAVP", "RTP/SAVPF")
# Our one crypto line's tag (RFC 4568 4: a decimal number naming the line).
OFFER_TAG = 1


class SrtpRequired(SdpError):
    """The installation requires SRTP and the peer's SDP brings no usable key."""

    code = "srtpRequired"


def new_key() -> bytes:
    """A master key and salt for one call (RFC 4568 6.1: random, never reused)."""
    return secrets.token_bytes(KEY_BYTES)


class SrtpStreams:
    """Both directions of one call: ours protected under our key, the peer's checked
    and decrypted under its key. libsrtp keeps the rollover counter and the replay
    window of each SSRC (RFC 3711 3.3.1, 3.3.2)."""

    __slots__ = ("_in", "_out", "rejected")

    def __init__(self, local_key: bytes, remote_key: bytes) -> None:
        self._out = Session(Policy(key=local_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        self._in = Session(Policy(key=remote_key, ssrc_type=Policy.SSRC_ANY_INBOUND))
        self.rejected = 0  # packets that failed authentication or the replay check

    def protect(self, packet: bytes) -> bytes:
        """`packet` as SRTP: payload encrypted, a 10-byte authentication tag appended."""
        return self._out.protect(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet inside an SRTP `packet`, or None (counted) when it fails
        authentication, is a replay, or is no SRTP packet at all."""
        try:
            return self._in.unprotect(packet)
        except (LibSrtpError, ValueError):
            self.rejected += 1
            return None

    def rekey_peer(self, remote_key: bytes) -> None:
        """The peer's new key (a re-INVITE gave one): its packets are checked under it."""
        self._in = Session(Policy(key=remote_key, ssrc_type=Policy.SSRC_ANY_INBOUND))


class CallCrypto:
    """What one call offers and what its answer made of it (see the module text)."""

    def __init__(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown SRTP mode {mode!r}; known: {', '.join(MODES)}")
        self.mode = mode
        self._key = new_key() if mode != "off" else b""
        self._remote: bytes = b""
        self.streams: SrtpStreams | None = None
        self.session_proto = "RTP/AVP"  # what the answer agreed; our own re-offers say it

    def __repr__(self) -> str:
        return f"CallCrypto(mode={self.mode!r}, secure={self.secure})"

    @property
    def secure(self) -> bool:
        """True once the answer brought a usable key: every packet is SRTP both ways."""
        return self.streams is not None

    @property
    def rejected(self) -> int:
        """Incoming packets dropped for failing authentication or the replay check."""
        return self.streams.rejected if self.streams is not None else 0

    @property
    def offer_proto(self) -> str:
        return "RTP/SAVP" if self.mode == "required" else "RTP/AVP"

    def offer_lines(self) -> tuple[str, ...]:
        """Our ``a=crypto`` value for an offer (none when off)."""
        if self.mode == "off":
            return ()
        return (sdp_crypto.format_line(OFFER_TAG, self._key),)

    def answered(self, proto: str, crypto: tuple[str, ...]) -> None:
        """The answer's protocol and crypto lines: sets up SRTP when they carry a usable
        key; raises SrtpRequired (an SdpError) when required and they do not, or when
        the answer is RTP/SAVP without one (nobody could decrypt what we send)."""
        if self.mode == "off":
            return
        found = sdp_crypto.answer_key(crypto, OFFER_TAG)
        if found is None:
            if self.mode == "required":
                raise SrtpRequired("SRTP is required and the answer brings no usable key")
            if proto in SECURE_PROTOCOLS:
                raise SrtpRequired("the answer is RTP/SAVP without a usable key")
            return  # optional: the peer ignored our line; plain RTP
        self._remote = found.key
        self.streams = SrtpStreams(self._key, found.key)
        self.session_proto = proto

    def answer_offer(self, proto: str, crypto: tuple[str, ...]) -> tuple[str, ...]:
        """The peer's offer, when we answer (an incoming call's INVITE, issue 16): the
        crypto value of our answer (our key under the tag of the offer's first usable
        line, RFC 4568 5.1.2), which sets up SRTP; () for plain RTP. Raises SrtpRequired
        (an SdpError) when required and the offer brings no usable key, or when it is
        RTP/SAVP without one (or while SRTP is off)."""
        if self.mode == "off":
            if proto in SECURE_PROTOCOLS:
                raise SrtpRequired("SRTP is off here and the offer is RTP/SAVP")
            return ()
        found = sdp_crypto.offer_key(crypto)
        if found is None:
            if self.mode == "required":
                raise SrtpRequired("SRTP is required and the offer brings no usable key")
            if proto in SECURE_PROTOCOLS:
                raise SrtpRequired("the offer is RTP/SAVP without a usable key")
            return ()  # optional: plain RTP
        self._remote = found.key
        self.streams = SrtpStreams(self._key, found.key)
        self.session_proto = proto
        return (sdp_crypto.format_line(found.tag, self._key),)

    def outgoing(self, packet: bytes) -> bytes:
        """What goes on the wire for our RTP `packet`: SRTP once keyed, the packet itself
        while plain RTP is allowed, else b"" (required and not keyed: nothing is sent)."""
        streams = self.streams
        if streams is not None:
            return streams.protect(packet)
        return b"" if self.mode == "required" else packet

    def incoming(self, data: bytes) -> bytes:
        """The RTP packet in a datagram from the peer: authenticated and decrypted once
        keyed (b"" when that fails: dropped, counted in `rejected`), the datagram itself
        while the call is plain, b"" when SRTP is required and not keyed."""
        streams = self.streams
        if streams is not None:
            return streams.unprotect(data) or b""
        return b"" if self.mode == "required" else data

    def reoffered(self, proto: str, crypto: tuple[str, ...]) -> tuple[str, ...]:
        """A re-INVITE's offer: the crypto value of our answer (our key under the tag of
        the offer's usable line), or () while the call is plain RTP. Raises SdpError
        when an SRTP call is offered no usable key (never a fall back to plain RTP) or
        a plain call RTP/SAVP."""
        if self.streams is None:
            if proto in SECURE_PROTOCOLS:
                raise SdpError("the call runs plain RTP; RTP/SAVP is not taken mid-call")
            return ()
        found = sdp_crypto.offer_key(crypto)
        if found is None:
            raise SrtpRequired("the call runs SRTP and the new offer brings no usable key")
        if found.key != self._remote:
            self._remote = found.key
            self.streams.rekey_peer(found.key)
        return (sdp_crypto.format_line(found.tag, self._key),)

    def reanswered(self, proto: str, crypto: tuple[str, ...]) -> None:
        """The answer to our own offer inside the call (in the ACK of a re-INVITE without
        SDP): the peer's key, perhaps a new one. Raises SdpError when an SRTP call's
        answer brings no usable key or a plain call's is RTP/SAVP (the call goes on as
        it was)."""
        if self.streams is None:
            if proto in SECURE_PROTOCOLS:
                raise SdpError("the call runs plain RTP; RTP/SAVP is not taken mid-call")
            return
        found = sdp_crypto.answer_key(crypto, OFFER_TAG)
        if found is None:
            raise SrtpRequired("the call runs SRTP and the answer brings no usable key")
        if found.key != self._remote:
            self._remote = found.key
            self.streams.rekey_peer(found.key)

    def session_lines(self) -> tuple[str, ...]:
        """Our crypto value for an offer of our own inside the call (a re-INVITE without
        SDP): our key again, while the call is SRTP."""
        if self.streams is None:
            return ()
        return (sdp_crypto.format_line(OFFER_TAG, self._key),)
