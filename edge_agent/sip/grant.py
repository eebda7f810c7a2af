"""What a registrar's answer grants: the expiry of our own binding, read defensively.

RFC 3261 10.3 (step 8): the registrar's 200 lists every current binding of the user as
a Contact, each with its `expires` parameter; an `Expires` header is optional and many
registrars (Kamailio, for one) send none. Other devices of the same user may be listed
too, so the expiry that counts is the one on the Contact that is ours (compared as RFC
3261 19.1.4 compares URIs), then the `Expires` header, then what we asked for.

Every number here comes from the network: delta-seconds are ASCII digits, at most ten
of them (RFC 3261 25.1: `1*DIGIT`), clamped to 2**32 - 1 (20.19); anything else is
treated as absent, never as a reason to fail the registration.
"""

from __future__ import annotations

import re

from edge_agent.sip.addresses import SipUri, parse_name_addr
from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Response

DELTA_MAX = 2**32 - 1
_DELTA = re.compile(r"[0-9]{1,10}")  # not str.isdigit(): that takes "²", which int() refuses
# RFC 3261 19.1.4: these URI parameters must match where either URI has them.
_MUST_MATCH = ("transport", "user", "ttl", "method", "maddr")


def delta_seconds(text: str | None) -> int | None:
    """A delta-seconds value (Expires, Min-Expires, `;expires=`), or None when malformed."""
    if text is None:
        return None
    value = text.strip()
    if not _DELTA.fullmatch(value):
        return None
    return min(int(value), DELTA_MAX)


def _default_port(uri: SipUri) -> int:
    return 5061 if uri.scheme == "sips" else 5060


def same_contact(a: SipUri, b: SipUri) -> bool:
    """Whether two contact URIs name the same binding (RFC 3261 19.1.4, leniently: a
    missing port is the default one, parameters only one side has are ignored)."""
    if a.scheme != b.scheme or a.user != b.user or a.host.lower() != b.host.lower():
        return False
    if (a.port or _default_port(a)) != (b.port or _default_port(b)):
        return False
    for name in _MUST_MATCH:
        mine, theirs = a.params.get(name), b.params.get(name)
        if (mine is not None or theirs is not None) and (mine or "").lower() != (
            theirs or ""
        ).lower():
            return False
    return True


def granted_expiry(response: Response, contact: str, requested: int) -> int:
    """Seconds the registrar grants our binding: our Contact's `expires`, else the Expires
    header, else `requested`. `contact` is the Contact we sent (a name-addr)."""
    expires = _contact_expiry(response, contact)
    if expires is not None:
        return expires
    header = delta_seconds(response.headers.get("Expires"))
    return header if header is not None else requested


def _contact_expiry(response: Response, contact: str) -> int | None:
    try:
        ours = parse_name_addr(contact).uri
        listed = response.headers.get_all("Contact")
    except SipError:  # a Contact list we cannot even cut into bindings says nothing
        return None
    for value in listed:
        try:
            binding = parse_name_addr(value)
        except SipError:
            continue  # a binding we cannot read is not ours
        if same_contact(binding.uri, ours):
            expires = delta_seconds(binding.params.get("expires"))
            if expires is not None:
                return expires
    return None
