"""The addresses inside SIP headers: URIs, name-addrs (From, To, Contact) and Via values.

Each is a dataclass with a `parse_*` function raising SipParseError and `__str__`
writing it back. Grammar from RFC 3261 19.1.1 (SIP URI), 20.10 (name-addr), 20.42
(Via) and RFC 3966 (tel URI). Parameter names are case-insensitive (7.3.1) and
kept lower-case; values are kept as written, quotes included.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from edge_agent.sip.errors import SipParseError

Params = dict[str, str | None]

# Characters of the user, password, host and parameter parts (RFC 3261 25.1), loosely:
# everything but separators, quotes, brackets of other parts, whitespace and controls.
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_PASSWORD = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
_PORT = re.compile(r":[0-9]{1,5}")
# URI parameters (RFC 3261 paramchar); header and Via parameters also take "`", a token
# character (RFC 4475 3.1.1.2 has a branch and a tag with it).
_PARAM = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")
_GENERIC_PARAM = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%`]+")
_HEADER = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]*")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
# The rest of an absoluteURI of another scheme (RFC 3261 25.1: uric, at least one).
_OPAQUE = re.compile(r"[A-Za-z0-9;/?:@&=+$,\-_.!~*'()%]+")
_QUOTED = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"')
_QUOTED_RUN = re.compile(r'(?:"(?:[^"\\\r\n]|\\[^\r\n])*+")++')  # possessive: no backtracking
# The sent-by starts at a non-space: `\s+(.+)` overlapped, quadratic on a line feed.
_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(\S.*)", re.IGNORECASE)


def split_quoted(text: str, separator: str, *, angles: bool = False) -> list[str]:
    """`text` cut at `separator` outside quoted strings (and <...> when `angles`).

    Raises SipParseError for an unterminated quoted string or an unbalanced "<".
    Ordinary characters, and runs of quoted strings, are skipped by patterns that
    cannot backtrack: Python looks only at the separators and brackets.
    """
    if '"' not in text and not (angles and "<" in text):
        return text.split(separator)  # nothing to skip: the common case, at C speed
    if _plain(separator, angles).fullmatch(text):
        return text.split(separator)  # no separator inside quotes or <>: the same cut
    stops = _stops(separator, angles)
    parts: list[str] = []
    start, i, depth = 0, 0, 0
    while (found := stops.search(text, i)) is not None:
        i = found.start()
        char = text[i]
        if char == '"':
            match = _QUOTED_RUN.match(text, i)
            if match is None:
                raise SipParseError(f"unterminated quoted string in {text!r}")
            i = match.end()
            continue
        if angles and char == "<":
            depth += 1
        elif angles and char == ">":
            depth -= depth > 0
        elif depth == 0:  # the separator
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if depth:
        raise SipParseError(f"unclosed '<' in {text!r}")
    parts.append(text[start:])
    return parts


@functools.lru_cache(maxsize=8)
def _stops(separator: str, angles: bool) -> re.Pattern[str]:
    """What `split_quoted` looks at: a quote, the separator, and the brackets."""
    return re.compile('["' + re.escape(separator) + ("<>" if angles else "") + "]")


@functools.lru_cache(maxsize=8)
def _plain(separator: str, angles: bool) -> re.Pattern[str]:
    """Text whose quoted strings (and <...>, unnested, when `angles`) are closed and
    hold no `separator`: `str.split` cuts it as `split_quoted` would. Each branch
    starts with a character of its own, each loop is possessive: no backtracking."""
    sep = re.escape(separator)
    brackets = "<>" if angles else ""
    quoted = rf'"(?:[^"\\\r\n{sep}{brackets}]|\\[^\r\n{sep}{brackets}])*+"'
    parts = [rf'[^"{brackets}]++', quoted]
    if angles:
        parts += [rf'<[^"<>{sep}]*+>', ">"]
    return re.compile("(?:" + "|".join(parts) + ")*+")


def parse_params(text: str, *, allow_quoted: bool = True) -> Params:
    """`;name=value;flag` (the leading ";" included) into a dict; names lower-case.

    Header parameters (generic-param): LWS around ";" and "=" is allowed (RFC 3261
    25.1 SEMI, EQUAL). `allow_quoted=False` reads a URI's parameters instead.
    """
    params: Params = {}
    if not text.strip():
        return params
    chars = _GENERIC_PARAM if allow_quoted else _PARAM
    pieces = split_quoted(text, ";")
    if pieces[0].strip():
        raise SipParseError(f"junk before parameters: {pieces[0].strip()!r}")
    for piece in pieces[1:]:
        name, sep, value = piece.partition("=")
        name, value = name.strip(), value.strip()
        if not chars.fullmatch(name):
            raise SipParseError(f"bad parameter {piece.strip()!r}")
        if not sep:
            params[name.lower()] = None
        elif chars.fullmatch(value) or (allow_quoted and _QUOTED.fullmatch(value)):
            params[name.lower()] = value
        else:
            raise SipParseError(f"bad parameter value {piece.strip()!r}")
    return params


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def format_host(host: str) -> str:
    """A host as a URI or a Via writes it: an IPv6 address in brackets (RFC 3261 25.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def hostport(host: str, port: int | None) -> str:
    """`host:port` (the host alone without a port) with an IPv6 address in brackets."""
    return format_host(host) if port is None else f"{format_host(host)}:{port}"


def _parse_hostport(text: str, whole: str) -> tuple[str, int | None]:
    """`host[:port]` with IPv6 references in brackets; the host without brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not _IPV6.fullmatch(text[1:end]):
            raise SipParseError(f"bad IPv6 reference in {whole!r}")
        host, rest = text[1:end], text[end + 1 :]
    else:
        host, colon, port_text = text.partition(":")
        if not _HOSTNAME.fullmatch(host):
            raise SipParseError(f"bad host {host!r} in {whole!r}")
        rest = colon + port_text
    if not rest:
        return host, None
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not _PORT.fullmatch(rest):
        raise SipParseError(f"bad port in {whole!r}")
    port = int(rest[1:])
    if not 0 < port < 65536:
        raise SipParseError(f"port {port} out of range in {whole!r}")
    return host, port


@dataclass
class SipUri:
    """A sip:, sips: or tel: URI. For tel: the number is `user` and `host` is empty.

    An address header may name a URI of another scheme (RFC 4475 3.3.4: `isbn:...`,
    `http://...`): then everything after the colon is `opaque`, kept as written, and
    `host` is empty. Nothing routes to such a URI; `parse_uri` refuses them.
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    opaque: str | None = None

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = "&".join(f"{k}={v}" for k, v in self.headers.items())
        return (
            f"{self.scheme}:{userinfo}{format_host(self.host)}{port}"
            f"{format_params(self.params)}{'?' + headers if headers else ''}"
        )


def parse_uri(text: str) -> SipUri:
    """A SIP, SIPS or tel URI; raises SipParseError naming what is wrong."""
    match = _SCHEME.match(text)
    if match is None:
        raise SipParseError(f"bad URI {text!r}: no scheme")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme == "tel":
        number, semicolon, tel_params = rest.partition(";")
        if not number or not _PARAM.fullmatch(number):
            raise SipParseError(f"bad URI {text!r}: no number")
        return SipUri("tel", number, "", None, parse_params(semicolon + tel_params))
    if scheme not in ("sip", "sips"):
        raise SipParseError(f"bad URI {text!r}: unsupported scheme {scheme!r}")
    user: str | None = None
    password: str | None = None
    if "@" in rest:  # the last one: neither parameters nor headers may hold an "@"
        userinfo, _, rest = rest.rpartition("@")
        user, colon, pw = userinfo.partition(":")
        if not _USER.fullmatch(user) or not _PASSWORD.fullmatch(pw):
            raise SipParseError(f"bad URI {text!r}: bad user part")
        password = pw if colon else None
    rest, question, header_text = rest.partition("?")
    hostport, semicolon, param_text = rest.partition(";")
    if not hostport:
        raise SipParseError(f"bad URI {text!r}: no host")
    host, port = _parse_hostport(hostport, text)
    try:
        params = parse_params(semicolon + param_text, allow_quoted=False)
    except SipParseError as exc:
        raise SipParseError(f"bad URI {text!r}: {exc}") from None
    headers: dict[str, str] = {}
    if question:
        for pair in header_text.split("&"):
            name, _, value = pair.partition("=")
            if not _PARAM.fullmatch(name) or not _HEADER.fullmatch(value):
                raise SipParseError(f"bad URI {text!r}: bad header {pair!r}")
            headers[name] = value
    return SipUri(scheme, user, host, port, params, headers, password)


@dataclass
class NameAddr:
    """A From, To, Contact, Route or Record-Route value: display name, URI, parameters."""

    display: str | None
    uri: SipUri
    params: Params = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = "" if self.display is None else _quote(self.display) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)


def _quote(text: str) -> str:
    """`text` as a quoted-string: quotes, backslashes and the controls a quoted-pair may
    carry (RFC 3261 25.1, all but CR and LF) get a backslash."""
    return '"' + re.sub(r'(["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f])', r"\\\1", text) + '"'


def _address_uri(text: str, whole: str, *, any_scheme: bool) -> SipUri:
    """The URI of a name-addr or addr-spec; with `any_scheme` an absoluteURI of any
    scheme (RFC 3261 20.10, 25.1) is taken, opaque."""
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match is not None else ""
    if not any_scheme or scheme in ("sip", "sips", "tel") or match is None:
        return parse_uri(text)
    if not _OPAQUE.fullmatch(text, match.end()):
        raise SipParseError(f"bad address {whole!r}: bad URI {text!r}")
    return SipUri(scheme, None, "", opaque=text[match.end() :])


def parse_name_addr(text: str, *, any_scheme: bool = True) -> NameAddr:
    """`"Name" <sip:a@b>;tag=x`, `Name <sip:a@b>`, `<sip:a@b>` or a bare `sip:a@b;tag=x`.

    After a bare URI the parameters belong to the header (RFC 3261 20.10), not the URI.
    LWS may stand before the ";" of a parameter, never inside the angle brackets (RFC
    4475 3.1.1.1 and 3.1.2.14). `any_scheme=False` takes only SIP, SIPS and tel URIs
    (Route and Record-Route, which requests are sent along).
    """
    text = text.strip()
    parts = split_quoted(text, "<")
    if len(parts) == 1:  # addr-spec without angle brackets
        uri_text, semicolon, params = text.partition(";")
        uri_text = uri_text.rstrip(" \t")
        if "," in uri_text or "?" in uri_text or any(c.isspace() for c in uri_text):
            raise SipParseError(f"bad address {text!r}: needs <> around the URI")
        uri = _address_uri(uri_text, text, any_scheme=any_scheme)
        return NameAddr(None, uri, _params_of(semicolon + params, text))
    display_text = parts[0].strip()
    remainder = text[len(parts[0]) + 1 :]
    uri_text, closing, params = remainder.partition(">")
    if not closing:
        raise SipParseError(f"bad address {text!r}: no closing '>'")
    if uri_text != uri_text.strip():
        raise SipParseError(f"bad address {text!r}: space inside '<>'")
    display: str | None
    if not display_text:
        display = None
    elif _QUOTED.fullmatch(display_text):
        display = _unquote(display_text)
    elif all(_TOKEN.fullmatch(word) for word in display_text.split()):
        display = " ".join(display_text.split())
    else:
        raise SipParseError(f"bad display name {display_text!r}")
    uri = _address_uri(uri_text, text, any_scheme=any_scheme)
    return NameAddr(display, uri, _params_of(params, text))


def _params_of(text: str, whole: str) -> Params:
    try:
        return parse_params(text)
    except SipParseError as exc:
        raise SipParseError(f"bad address {whole!r}: {exc}") from None


@dataclass
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        params = format_params(self.params)
        return f"SIP/2.0/{self.transport} {format_host(self.host)}{port}{params}"


def parse_via(text: str) -> Via:
    """One Via value (a header with several is cut with `Headers.get_all` first)."""
    match = _VIA.fullmatch(text.strip())
    if match is None:
        raise SipParseError(f"bad Via {text.strip()!r}")
    sent_by, semicolon, params = match.group(2).partition(";")
    try:
        host, port = _parse_hostport(sent_by.strip(), sent_by.strip())
        parsed = parse_params(semicolon + params)
    except SipParseError as exc:
        raise SipParseError(f"bad Via {text.strip()!r}: {exc}") from None
    return Via(match.group(1).upper(), host, port, parsed)
