"""The device cookie: proof that this browser signed in to an account before (no I/O).

OWASP's "Slow Down Online Guessing Attacks with Device Cookies": after a
successful sign-in the browser gets a signed token binding the account (by its
keyed hash) to a random nonce. An attempt that shows a valid token for the
account it signs in to comes from a known device and passes only that device's
own counter, never the address's or the account's; so no attacker, wherever he
sits, can keep the account's owner out of a browser they used before.

One cookie holds the tokens of up to MAX_TOKENS accounts (a shared office
browser), newest last: ``nonce.expires.signature`` joined by ``~``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

MAX_TOKENS = 5
# Longer values are no cookie of ours; they are not even parsed.
MAX_LENGTH = 1024


def known_nonce(secret: bytes, account: str, cookie: str | None, now: datetime) -> str | None:
    """The nonce of this account's valid, unexpired token in the cookie, or None."""
    for nonce, expires, signature in _tokens(cookie):
        if expires > now.timestamp() and hmac.compare_digest(
            signature, _sign(secret, account, nonce, expires)
        ):
            return nonce
    return None


def issue(secret: bytes, account: str, cookie: str | None, expires: datetime) -> str:
    """The cookie's new value: a fresh token for this account (its older one
    replaced) after the tokens of other accounts, at most MAX_TOKENS."""
    kept = [
        f"{nonce}.{until}.{signature}"
        for nonce, until, signature in _tokens(cookie)
        if not hmac.compare_digest(signature, _sign(secret, account, nonce, until))
    ]
    nonce = _b64(secrets.token_bytes(16))
    until = int(expires.timestamp())
    kept.append(f"{nonce}.{until}.{_sign(secret, account, nonce, until)}")
    return "~".join(kept[-MAX_TOKENS:])


def _tokens(cookie: str | None) -> list[tuple[str, int, str]]:
    if not cookie or len(cookie) > MAX_LENGTH:
        return []
    tokens = []
    for token in cookie.split("~")[:MAX_TOKENS]:
        parts = token.split(".")
        if len(parts) == 3 and parts[1].isdigit() and len(parts[1]) <= 12:
            tokens.append((parts[0], int(parts[1]), parts[2]))
    return tokens


def _sign(secret: bytes, account: str, nonce: str, expires: int) -> str:
    message = f"device-cookie\0{account}\0{nonce}\0{expires}".encode()
    return _b64(hmac.new(secret, message, hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
