"""Digest authentication for SIP (RFC 3261 22.4, RFC 7616, RFC 8760).

`parse_challenge` reads a WWW-Authenticate or Proxy-Authenticate value,
`authorization` answers it, `verify` checks an answer (for a registrar in tests).
Algorithms: MD5, SHA-256 and SHA-512-256, each also as -sess; qop auth or
auth-int, or none at all (RFC 2069 compatibility, still common on PBXs).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.sip.errors import DigestError

_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
ALGORITHMS = tuple(a + s for a in _HASHES for s in ("", "-sess"))
_BY_LOWER = {a.lower(): a for a in ALGORITHMS}
# name=token or name="quoted string", separated by commas (RFC 7235 2.1 auth-param).
_PARAM = re.compile(
    r'\s*([A-Za-z0-9\-.!%*_+`\'~]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|$)', re.DOTALL
)


def _parse_params(text: str, what: str) -> dict[str, str]:
    """The auth-params of a challenge or credentials, names lower-case, values unquoted."""
    params: dict[str, str] = {}
    position = 0
    end = len(text.rstrip())  # not text[position:].strip() per parameter: quadratic
    while position < end:
        match = _PARAM.match(text, position)
        if match is None:
            raise DigestError(f"bad {what} at {text[position:].strip()[:40]!r}")
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name in params:
            raise DigestError(f"{name} twice in {what}")
        params[name] = value
        position = match.end()
    return params


def _scheme_and_params(value: str, what: str) -> dict[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest {what}: {value.strip()[:40]!r}")
    return _parse_params(rest, what)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Challenge:
    """A Digest challenge (WWW-Authenticate or Proxy-Authenticate value)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    scheme: str = "Digest"

    def __str__(self) -> str:
        """The header value, e.g. for a registrar's 401."""
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


def parse_challenge(header_value: str) -> Challenge:
    """A WWW-Authenticate/Proxy-Authenticate value; raises DigestError when unusable."""
    params = _scheme_and_params(header_value, "challenge")
    for required in ("realm", "nonce"):
        if required not in params:
            raise DigestError(f"challenge without {required}")
    algorithm = params.get("algorithm", "MD5")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=_BY_LOWER.get(algorithm.lower(), algorithm),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def _hash_function(algorithm: str) -> Callable[[str | bytes], str]:
    base = _BY_LOWER.get(algorithm.lower(), "").removesuffix("-sess")
    if base not in _HASHES:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    name = _HASHES[base]
    try:
        hashlib.new(name)
    except ValueError:  # SHA-512/256 comes from OpenSSL and may be missing
        raise DigestError(f"digest algorithm {algorithm} is not available here") from None

    def digest(data: str | bytes) -> str:
        return hashlib.new(name, data.encode() if isinstance(data, str) else data).hexdigest()

    return digest


def _response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    cnonce: str,
    nc: str,
    body: bytes,
) -> str:
    """The request-digest of RFC 7616 3.4.1 (RFC 2069 style when qop is None)."""
    h = _hash_function(algorithm)
    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.lower().endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    # auth-int also covers the body (RFC 7616 3.4.3)
    ha2 = h(f"{method}:{uri}:{h(body)}") if qop == "auth-int" else h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization (or Proxy-Authorization) value answering `challenge`.

    qop=auth is preferred when offered; auth-int is used when it is all that is
    offered. Raises DigestError for an algorithm or qop we cannot answer.
    """
    _hash_function(challenge.algorithm)  # fail early on an unknown algorithm
    qop: str | None = None
    if challenge.qop:
        if "auth" in challenge.qop:
            qop = "auth"
        elif "auth-int" in challenge.qop:
            qop = "auth-int"
        else:
            raise DigestError(f"unsupported qop {','.join(challenge.qop)!r}")
    sess = challenge.algorithm.lower().endswith("-sess")
    if cnonce is None and (qop is not None or sess):
        cnonce = secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = _response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        cnonce=cnonce or "",
        nc=nc_text,
        body=body,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)


@dataclass(frozen=True)
class Credentials:
    """An Authorization or Proxy-Authorization value, parsed."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    cnonce: str | None = None
    nc: str | None = None
    opaque: str | None = None


def parse_credentials(header_value: str) -> Credentials:
    """An Authorization/Proxy-Authorization value; raises DigestError when malformed."""
    params = _scheme_and_params(header_value, "credentials")
    for required in ("username", "realm", "nonce", "uri", "response"):
        if required not in params:
            raise DigestError(f"credentials without {required}")
    qop = params.get("qop")
    if qop is not None and ("cnonce" not in params or "nc" not in params):
        raise DigestError("credentials with qop but without cnonce or nc")
    algorithm = params.get("algorithm", "MD5")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=_BY_LOWER.get(algorithm.lower(), algorithm),
        qop=qop.lower() if qop is not None else None,
        cnonce=params.get("cnonce"),
        nc=params.get("nc"),
        opaque=params.get("opaque"),
    )


def verify(header_value: str, *, method: str, password: str, realm: str, body: bytes = b"") -> bool:
    """Whether the credentials answer correctly for `realm` with `password`.

    Raises DigestError for a value that is not Digest credentials or names an
    algorithm we do not know; checking the nonce is fresh is the caller's job.
    """
    credentials = parse_credentials(header_value)
    if credentials.realm != realm or credentials.qop not in (None, "auth", "auth-int"):
        return False
    expected = _response(
        algorithm=credentials.algorithm,
        username=credentials.username,
        realm=realm,
        password=password,
        nonce=credentials.nonce,
        method=method,
        uri=credentials.uri,
        qop=credentials.qop,
        cnonce=credentials.cnonce or "",
        nc=credentials.nc or "",
        body=body,
    )
    return hmac.compare_digest(expected.encode(), credentials.response.lower().encode())
