"""A small blocking SIP REGISTER client for the test bed's Kamailio (tests/sip/kamailio.py).

It registers a contact for a user with digest authentication (RFC 3261 22, RFC 2617
MD5 with qop=auth), or asks for a user's bindings (a REGISTER without Contact). The
REGISTER may come from any socket: a third-party registration puts a member's SIPp or
baresip (which listen elsewhere) in the registrar without them speaking REGISTER.
Its own digest code, not the agent's: a fixture must not share the code it tests.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
from dataclasses import dataclass, field

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


@dataclass
class Reply:
    """A response, parsed just enough: status, reason, headers by lower-case name."""

    status: int
    reason: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    raw: str = ""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def contacts(self) -> list[str]:
        """The Contact values, one per binding (comma-separated values split)."""
        found: list[str] = []
        for value in self.headers.get("contact", []) + self.headers.get("m", []):
            found += [part.strip() for part in re.split(r",(?=\s*<)", value) if part.strip()]
        return found


def parse_reply(data: bytes) -> Reply:
    text = data.decode(errors="replace")
    head = text.split("\r\n\r\n", 1)[0]
    first, *lines = head.split("\r\n")
    _, status, reason = [*first.split(" ", 2), ""][:3]
    reply = Reply(int(status), reason, raw=text)
    for line in lines:
        name, _, value = line.partition(":")
        reply.headers.setdefault(name.strip().lower(), []).append(value.strip())
    return reply


def md5_hex(text: str) -> str:
    """MD5, the SIP digest's hash (RFC 2617)."""
    return hashlib.md5(text.encode()).hexdigest()


def digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """The Authorization value answering a `WWW-Authenticate: Digest ...` challenge."""
    params = {m[1].lower(): m[2] or m[3] for m in _PARAM.finditer(challenge)}
    realm, nonce = params["realm"], params["nonce"]
    ha1 = md5_hex(f"{user}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = md5_hex(f"{ha1}:{nonce}:{ha2}")
    if "opaque" in params:
        fields += f', opaque="{params["opaque"]}"'
    return f'Digest {fields}, response="{response}"'


class RegisterClient:
    """REGISTERs for `user` at the registrar `server` (host, port) over UDP from loopback."""

    def __init__(self, server: tuple[str, int], domain: str, timeout: float = 5.0) -> None:
        self.server = server
        self.domain = domain
        self.timeout = timeout

    def register(
        self,
        user: str,
        password: str,
        contact: str | None,
        expires: int = 3600,
        *,
        auth_user: str | None = None,
    ) -> Reply:
        """The final answer to REGISTER (after one challenge); `contact` None asks for
        the bindings, "*" with expires 0 removes all. `auth_user`: answer the challenge
        as another user than the one registered (From, To)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.5)
            call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
            reply = self._exchange(sock, user, contact, expires, call_id, tag, 1, None)
            if reply.status == 401:
                challenge = reply.header("WWW-Authenticate") or ""
                uri = f"sip:{self.domain}"
                authorization = digest(challenge, auth_user or user, password, "REGISTER", uri)
                reply = self._exchange(sock, user, contact, expires, call_id, tag, 2, authorization)
            return reply

    def _exchange(
        self,
        sock: socket.socket,
        user: str,
        contact: str | None,
        expires: int,
        call_id: str,
        tag: str,
        cseq: int,
        authorization: str | None,
    ) -> Reply:
        host, port = sock.getsockname()[:2]
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [
            f"REGISTER sip:{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
            f"From: <sip:{user}@{self.domain}>;tag={tag}",
            f"To: <sip:{user}@{self.domain}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            "Max-Forwards: 70",
            "User-Agent: rundruf-test-register",
        ]
        if contact is not None:
            lines += [f"Contact: <{contact}>" if contact != "*" else "Contact: *"]
            lines += [f"Expires: {expires}"]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        message = ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()
        # UDP on loopback rarely loses anything, but resend as RFC 3261 timer E would.
        waited = 0.0
        while waited < self.timeout:
            sock.sendto(message, self.server)
            try:
                while True:
                    reply = parse_reply(sock.recv(65535))
                    if reply.status >= 200:
                        return reply
            except TimeoutError:
                waited += 0.5
        raise AssertionError(f"no final answer to REGISTER for {user} within {self.timeout} s")
