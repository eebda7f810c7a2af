"""Session descriptions (RFC 4566) for G.711 audio calls, offer and answer (RFC 3264).

Only what a telephone call needs: the first audio stream, its address and port,
payload types with their encodings, telephone-events (RFC 4733), direction and
ptime. `parse` is liberal (LF line ends, unknown lines ignored); `negotiate`
says what to send, or raises SdpError when nothing fits.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from edge_agent.sip.errors import SdpError

# Static audio payload types (RFC 3551 table 4): known without an rtpmap line.
STATIC = {
    0: "PCMU/8000",
    3: "GSM/8000",
    4: "G723/8000",
    5: "DVI4/8000",
    6: "DVI4/16000",
    7: "LPC/8000",
    8: "PCMA/8000",
    9: "G722/8000",
    10: "L16/44100/2",
    11: "L16/44100",
    12: "QCELP/8000",
    13: "CN/8000",
    14: "MPA/90000",
    15: "G728/8000",
    16: "DVI4/11025",
    17: "DVI4/22050",
    18: "G729/8000",
}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly"}
_PROTOCOLS = ("RTP/AVP", "RTP/AVPF")  # plain RTP
_SECURE_PROTOCOLS = ("RTP/SAVP", "RTP/SAVPF")  # SRTP: only with SDES keys (srtp.py)
TELEPHONE_EVENT = "telephone-event/8000"
_MEDIA = re.compile(r"(\w+) ([0-9]{1,5})(?:/[0-9]+)? (\S+)((?: +\S+)*) *")
_PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")
_NUMBER = re.compile(r"[0-9]{1,19}")
_CONNECTION = re.compile(r"IN (IP4|IP6) ([^/\s]+)(?:/[0-9]+){0,2} *")
# RFC 1123 2.1 labels, at most 253 characters: what a resolver may be asked.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
MAX_CRYPTO_LINES = 16  # a=crypto lines kept per stream: one per suite is a handful


@dataclass
class SessionDescription:
    """The first audio stream of a session description (what `parse` keeps)."""

    address: str
    port: int
    payloads: dict[int, str]  # in the m= line's order: pt -> "PCMA/8000" ("" when unknown)
    direction: str = "sendrecv"
    ptime: int | None = None
    fmtp: dict[int, str] = field(default_factory=dict)
    proto: str = "RTP/AVP"
    session_id: int = 0
    session_version: int = 0
    # The stream's a=crypto values (SDES keys, RFC 4568: sdp_crypto.py); never in a repr.
    crypto: tuple[str, ...] = field(default=(), repr=False)

    def __bytes__(self) -> bytes:
        if not self.payloads:
            raise SdpError("no payload types for the m= line")
        family = "IP6" if ":" in self.address else "IP4"
        formats = " ".join(str(pt) for pt in self.payloads)
        lines = [
            "v=0",
            f"o=- {self.session_id} {self.session_version} IN {family} {self.address}",
            "s=-",
            f"c=IN {family} {self.address}",
            "t=0 0",
            f"m=audio {self.port} {self.proto} {formats}",
        ]
        lines += [f"a=rtpmap:{pt} {name}" for pt, name in self.payloads.items() if name]
        lines += [f"a=fmtp:{pt} {value}" for pt, value in self.fmtp.items()]
        lines += [f"a=crypto:{value}" for value in self.crypto]
        if self.ptime is not None:
            lines.append(f"a=ptime:{self.ptime}")
        lines.append(f"a={self.direction}")
        return ("\r\n".join(lines) + "\r\n").encode()


@dataclass(frozen=True)
class Negotiated:
    """What to send where: the codec chosen from the answer and the DTMF event type."""

    address: str
    port: int
    codec_pt: int
    codec: str  # "PCMA" or "PCMU"
    event_pt: int | None


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def on_hold(description: SessionDescription) -> bool:
    """Whether the peer that wrote `description` wants none of our audio: `sendonly` or
    `inactive` (RFC 3264 8.4), or the address 0.0.0.0 or :: (RFC 2543's hold)."""
    return description.direction in ("sendonly", "inactive") or _unspecified(description.address)


def _answer_direction(offer: SessionDescription) -> str:
    """The offer's direction mirrored; an offer on hold by its address (0.0.0.0) gets
    nothing from us, so we say we only receive (RFC 3264 6.1 allows it)."""
    direction = _MIRROR.get(offer.direction, "inactive")
    if _unspecified(offer.address):
        return {"sendrecv": "recvonly", "sendonly": "inactive"}.get(direction, direction)
    return direction


def _connection(value: str) -> str:
    """The address of a c= line: an IP literal or a host name (RFC 4566 5.7), which the
    call looks up once (`media_host.py`); anything else is no address at all."""
    match = _CONNECTION.fullmatch(value)
    if match is None:
        raise SdpError(f"bad c= line {value[:60]!r}")
    kind, address = match.groups()
    if _is_ip(address):
        # An address of the other family is no address of this line (RFC 4566 5.7):
        # taken, the call would be answered and no RTP could flow.
        if f"IP{ipaddress.ip_address(address).version}" != kind:
            raise SdpError(f"an address that is not {kind} in c= line {value[:60]!r}")
    elif not _HOST_NAME.fullmatch(address):
        raise SdpError(f"bad address in c= line {value[:60]!r}")
    return address


def _media(value: str) -> tuple[str, int, str, list[int]]:
    match = _MEDIA.fullmatch(value)
    if match is None or not match.group(4).split():
        raise SdpError(f"bad m= line {value[:60]!r}")
    kind, port, proto, formats = match.groups()
    if int(port) > 65535:
        raise SdpError(f"bad port in m= line {value[:60]!r}")
    if not proto.startswith("RTP/"):
        return kind, int(port), proto, []
    payload_types = []
    for text in formats.split():
        if not _PAYLOAD_TYPE.fullmatch(text) or int(text) > 127:
            raise SdpError(f"bad payload type {text[:10]!r}")
        payload_types.append(int(text))
    return kind, int(port), proto, payload_types


def _ptime(value: str) -> int:
    try:
        ptime = round(float(value))
    except ValueError:
        raise SdpError(f"bad ptime {value[:20]!r}") from None
    if not 0 < ptime <= 1000:
        raise SdpError(f"bad ptime {value[:20]!r}")
    return ptime


def _split(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    lines: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", text):
        if not line.strip():
            continue
        kind, equals, value = line.partition("=")
        if not equals or len(kind) != 1 or not kind.isalpha():
            raise SdpError(f"bad SDP line {line[:60]!r}")
        lines.append((kind, value.strip()))
    if not lines or lines[0] != ("v", "0"):
        raise SdpError("SDP does not start with v=0")
    return lines


def _attribute(
    kind: str, value: str, target: dict[str, str], rtpmap: dict[int, str], fmtp: dict[int, str]
) -> None:
    """One c= or a= line of the session or the audio stream (`target`)."""
    if kind == "c":
        target["c"] = _connection(value)
    elif kind == "a":
        name, _, rest = value.partition(":")
        if name in DIRECTIONS:
            target["direction"] = name
        elif name == "ptime":
            target["ptime"] = rest
        elif name in ("rtpmap", "fmtp"):
            pt_text, _, attribute = rest.partition(" ")
            if _PAYLOAD_TYPE.fullmatch(pt_text):
                (rtpmap if name == "rtpmap" else fmtp)[int(pt_text)] = attribute.strip()


def parse(body: bytes) -> SessionDescription:
    """The first audio stream of an SDP body; raises SdpError when there is none."""
    lines = _split(body)
    session: dict[str, str] = {}  # session-level c=, direction, ptime
    media: dict[str, str] = {}  # the same of the audio stream
    m_line: tuple[str, int, str, list[int]] | None = None
    rtpmap: dict[int, str] = {}
    fmtp: dict[int, str] = {}
    crypto: list[str] = []  # the audio stream's a=crypto values (media level only)
    session_id = session_version = 0
    section = "session"  # then "audio", or "other" inside another stream
    for kind, value in lines:
        if kind == "m":
            if m_line is not None:
                break  # only the first audio stream is ours
            parsed = _media(value)
            section = "audio" if parsed[0] == "audio" else "other"
            if section == "audio":
                m_line = parsed
        elif kind == "o" and section == "session":
            origin = value.split()
            # Numbers we count on (RFC 4566 5.2: at most 64 bits); anything else is 0.
            if len(origin) == 6 and _NUMBER.fullmatch(origin[1]) and _NUMBER.fullmatch(origin[2]):
                session_id, session_version = int(origin[1]), int(origin[2])
        elif kind == "a" and section == "audio" and value.startswith("crypto:"):
            crypto.append(value[len("crypto:") :])
        elif section != "other":
            _attribute(kind, value, session if section == "session" else media, rtpmap, fmtp)
    if m_line is None:
        raise SdpError("no audio stream")
    _, port, proto, payload_types = m_line
    address = media.get("c") or session.get("c")
    if address is None:
        raise SdpError("no connection address for the audio stream")
    ptime = media.get("ptime") or session.get("ptime")
    return SessionDescription(
        address=address,
        port=port,
        payloads={pt: rtpmap.get(pt) or STATIC.get(pt, "") for pt in payload_types},
        direction=media.get("direction") or session.get("direction") or "sendrecv",
        ptime=_ptime(ptime) if ptime is not None else None,
        fmtp={pt: v for pt, v in fmtp.items() if pt in payload_types},
        proto=proto,
        session_id=session_id,
        session_version=session_version,
        crypto=tuple(crypto[:MAX_CRYPTO_LINES]),
    )


def _encoding(name: str) -> tuple[str, str]:
    """("PCMA", "8000") from "pcma/8000"."""
    encoding, _, rest = name.partition("/")
    return encoding.upper(), rest.partition("/")[0]


def _choose(
    description: SessionDescription, running: tuple[int, str] | None = None
) -> tuple[tuple[int, str] | None, int | None]:
    """The first G.711 payload type listed (with its name) and the telephone-event type.

    With `running` (payload type, codec) only that codec will do: a call's audio is
    encoded once, so a re-offer keeps the codec or gets nothing (None).
    """
    codecs = [
        (pt, _encoding(name)[0])
        for pt, name in description.payloads.items()
        if _encoding(name) in (("PCMA", "8000"), ("PCMU", "8000"))
    ]
    if running is not None:
        codecs = [codec for codec in codecs if codec == running]
    codec = codecs[0] if codecs else None
    event = next(
        (
            pt
            for pt, name in description.payloads.items()
            if _encoding(name) == ("TELEPHONE-EVENT", "8000")
        ),
        None,
    )
    return codec, event


def negotiate(
    answer: SessionDescription, running: tuple[int, str] | None = None, *, secure: bool = False
) -> Negotiated:
    """The codec (the first PCMA or PCMU the answer lists, or the `running` one) and
    event type to use. RTP/SAVP only when `secure` (the call speaks SRTP: its
    `srtp.CallCrypto` then checks the key)."""
    if answer.proto not in _PROTOCOLS and not (secure and answer.proto in _SECURE_PROTOCOLS):
        raise SdpError(f"unsupported media protocol {answer.proto}")
    if answer.port == 0:
        raise SdpError("audio stream rejected (port 0)")
    codec, event = _choose(answer, running)
    if codec is None:
        raise SdpError("no common codec" if running is None else f"{running[1]} is not offered")
    return Negotiated(answer.address, answer.port, codec[0], codec[1], event)


def offer(
    address: str,
    port: int,
    session_id: int,
    *,
    payloads: tuple[int, ...] = (8, 0, 101),
    session_version: int | None = None,
    proto: str = "RTP/AVP",
    crypto: tuple[str, ...] = (),
) -> bytes:
    """An offer of G.711 audio (PCMA, PCMU) and telephone-events 0-16 (a dynamic type);
    `session_version` defaults to `session_id` (a first offer). With SRTP `proto` is
    RTP/SAVP (or RTP/AVP for a best-effort offer) and `crypto` our a=crypto value."""
    names: dict[int, str] = {}
    fmtp: dict[int, str] = {}
    for pt in payloads:
        if pt in (0, 8):
            names[pt] = STATIC[pt]
        elif 96 <= pt <= 127:
            names[pt] = TELEPHONE_EVENT
            fmtp[pt] = "0-16"
        else:
            raise SdpError(f"cannot offer payload type {pt}")
    description = SessionDescription(
        address,
        port,
        names,
        "sendrecv",
        20,
        fmtp,
        session_id=session_id,
        session_version=session_id if session_version is None else session_version,
        proto=proto,
        crypto=crypto,
    )
    return bytes(description)


def answer(
    offer: SessionDescription,
    address: str,
    port: int,
    session_id: int,
    *,
    session_version: int | None = None,
    running: tuple[int, str] | None = None,
    crypto: tuple[str, ...] = (),
) -> bytes:
    """The answer to `offer`: its first G.711 codec (or the `running` one) and its
    telephone-event type. `session_version` defaults to `session_id`; a later answer in
    the same session passes the previous version + 1 (RFC 3264 8).

    A stream we cannot take (no G.711, SRTP without our `crypto` answer, or port 0
    in the offer) is answered with port 0, which rejects it (RFC 3264 6).
    """
    version = session_id if session_version is None else session_version
    codec, event = _choose(offer, running)
    protocols = _PROTOCOLS + _SECURE_PROTOCOLS if crypto else _PROTOCOLS
    if codec is None or offer.port == 0 or offer.proto not in protocols:
        first = next(iter(offer.payloads), 0)
        rejected = SessionDescription(
            address,
            0,
            {first: offer.payloads.get(first, "")},
            "inactive",
            proto=offer.proto,
            session_id=session_id,
            session_version=version,
        )
        return bytes(rejected)
    names = {codec[0]: offer.payloads[codec[0]]}
    fmtp: dict[int, str] = {}
    if event is not None:
        names[event] = offer.payloads[event]
        fmtp[event] = offer.fmtp.get(event, "0-16")
    description = SessionDescription(
        address,
        port,
        names,
        _answer_direction(offer),
        offer.ptime or 20,
        fmtp,
        proto=offer.proto,
        session_id=session_id,
        session_version=version,
        crypto=crypto,
    )
    return bytes(description)
