"""An agent behind NAT talking to a PBX in the cloud (issue 15, point 10; RFC 3581).

Three parts, docs/decisions/sip-nat.md says why:

- as a server (requests from the PBX: OPTIONS, re-INVITE, BYE, INFO, NOTIFY),
  `stamp_via` writes where the request really came from into the answer's top Via:
  `rport=<source port>` where the request's Via has an empty `rport`, and
  `received=<source IP>` whenever it has one (RFC 3581 4) or its host is not the source
  (RFC 3261 18.2.1). The answer itself always goes back to the source address and port
  (UDP) or over the connection the request came on (TCP): the user agent does that;
- as a client, `seen_at` reads our address as the registrar saw it from the
  `received`/`rport` of its answer to our REGISTER (we send `;rport` in every Via),
  and the user agent registers that address as its Contact;
- `keep_alive` sends a CRLF CRLF datagram to the PBX every `KEEPALIVE_S` seconds, so
  the NAT keeps the mapping the PBX's requests come back through (RFC 5626 4.4.1).

Pure except `keep_alive`. Every value read here comes from the network and is
checked: a `received` that is no IP address of our family, or an `rport` that is no
port, teaches nothing, nor does an address no NAT could have given us (`implausible`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from typing import TYPE_CHECKING

from edge_agent.sip.addresses import parse_via, split_quoted
from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Headers, Response

if TYPE_CHECKING:  # transport.py stamps its refusals here: no import at run time
    from edge_agent.sip.transport import Address, Transport

__all__ = [
    "KEEPALIVE_S",
    "implausible",
    "keep_alive",
    "learned",
    "seen_at",
    "stamp_via",
    "stamped",
]

log = logging.getLogger(__name__)

# Below the 30 s after which many NATs and firewalls (Windows' among them) forget an
# idle UDP mapping; PJSIP's default is 15 s as well. Four bytes each time.
KEEPALIVE_S = 15.0
_PORT = re.compile(r"[0-9]{1,5}")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def stamp_via(response: Response, source: Address) -> None:
    """Writes `received` and `rport` (RFC 3581 4) into the top Via of our answer to a
    request that came from `source`. The rest of the Via line stays as it was written
    (clients compare it); a Via we cannot read is left alone."""
    line = response.headers.first_line("Via")
    if line is None:
        return
    try:
        values = split_quoted(line, ",", angles=True)
        top = values[0]
        via = parse_via(top)
    except SipError:
        return
    source_ip = _ip(source[0])
    if source_ip is None:
        return
    pieces = split_quoted(top, ";")
    kept = [pieces[0].rstrip()]
    rport = False
    for piece in pieces[1:]:
        name, sep, _ = piece.partition("=")
        name = name.strip().lower()
        if name == "received":
            continue  # ours to write, not the client's
        if name == "rport" and not sep:
            rport = True
            continue  # written below with the port
        kept.append(piece.strip())
    if rport:
        kept.append(f"rport={source[1]}")
    if rport or _ip(via.host) != source_ip:
        kept.append(f"received={source_ip}")
    values[0] = ";".join(kept)
    # The first Via line only, in its place (`Headers.set` would drop the other lines).
    fields = response.headers.items()
    first = next(i for i, (name, _) in enumerate(fields) if name == "Via")
    fields[first] = ("Via", ",".join(values))
    response.headers = Headers(fields)


def stamped(response: Response, source: Address) -> Response:
    """A copy of `response` with `stamp_via` done for `source`; `response` stays as it
    was. A remembered answer is stamped afresh each time it goes out: a retransmission
    from another port (a NAT's new mapping) gets that port, not the first one's."""
    copy = Response(response.status, response.reason, response.headers.copy(), response.body)
    stamp_via(copy, source)
    return copy


def seen_at(response: Response, local: Address) -> Address | None:
    """Our address as the server of `response` saw it: `received` (else the host we
    wrote) and `rport` (else the port we wrote). None when the top Via cannot be read
    or its values are no address of `local`'s family."""
    try:
        via = parse_via(response.headers.get("Via") or "")
    except SipError:
        return None
    local_ip = _ip(local[0])
    host: str = local[0]
    port = local[1]
    received = via.params.get("received")
    if received is not None:
        ip = _ip(received)
        if ip is None or local_ip is None or ip.version != local_ip.version:
            return None
        if ip.is_unspecified or ip.is_multicast:
            return None
        host = str(ip)
    rport = via.params.get("rport")
    if rport is not None:
        if not _PORT.fullmatch(rport) or not 0 < int(rport) < 65536:
            return None
        port = int(rport)
    return host, port


def learned(
    response: Response,
    local: Address,
    public: Address | None,
    registrar: Address | None = None,
) -> Address | None:
    """Our public address after the answer `response` from `registrar` to our REGISTER:
    where it saw us when that is not `local`, None when it saw `local` (no NAT),
    `public` as it was when its Via cannot be read or names no address a NAT could
    have given us (`implausible`)."""
    seen = seen_at(response, local)
    if seen is None:
        return public
    why = implausible(seen[0], local[0], registrar[0] if registrar else None)
    if why is not None:
        if _refused.pop(seen, None) is None:  # once per address, not per REGISTER
            log.warning("the registrar says it sees this agent at %s:%d; ignored: %s", *seen, why)
        _refused[seen] = why
        while len(_refused) > _REFUSED_KEPT:
            del _refused[next(iter(_refused))]
        return public
    now = None if seen == local else seen
    if now != public:
        log.info("the registrar sees this agent at %s:%d (behind NAT: %s)", *seen, now is not None)
    return now


# The implausible addresses logged lately (the same one is logged once).
_refused: dict[Address, str] = {}
_REFUSED_KEPT = 16
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# The subnet an address is taken to be in, its netmask unknown: what most LANs are.
_SUBNET_BITS = {4: 24, 6: 64}


def implausible(seen: str, local: str, registrar: str | None) -> str | None:
    """Why the registrar's view `seen` of our address `local` cannot be a NAT's mapping
    (None: it can be); docs/decisions/sip-nat.md, "Plausible". Never: an address that
    is not one host's (broadcast, reserved, multicast, link-local, 0/8), the
    registrar's own, loopback while we are bound to another address. Bound to a LAN
    or global address: no NAT between us and a registrar in our own subnet (/24, IPv6
    /64); a global address is taken, a private one only while ours is private too and
    in another subnet. Bound to loopback (tests, development; a wildcard is refused)
    the registrar on this host stands in for one elsewhere: there are no subnets."""
    seen_ip, local_ip = _ip(seen), _ip(local)
    if seen_ip is None or local_ip is None or seen_ip == local_ip:
        return None  # the port alone, or nothing, changed (or seen_at refused it)
    registrar_ip = _ip(registrar) if registrar is not None else None
    if seen_ip.is_loopback and not local_ip.is_loopback:
        return "a loopback address while we are bound to another"
    if not seen_ip.is_loopback and not _unicast(seen_ip):
        return "not the address of one host"
    if seen_ip == registrar_ip:
        return "the registrar's own address"
    if local_ip.is_loopback:
        return None
    if registrar_ip is not None and _same_subnet(registrar_ip, local_ip):
        return "the registrar is in our subnet: no NAT between us"
    if seen_ip.is_global:
        return None
    if local_ip.is_global:
        return "a private address while ours is global"
    if _same_subnet(seen_ip, local_ip):
        return "an address in our own subnet"
    return None


def _unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` can be one host's address on the way to the registrar."""
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        return False  # 255.255.255.255 and 240/4 are reserved
    if isinstance(ip, ipaddress.IPv4Address):
        return ip not in _THIS_NETWORK
    return ip.ipv4_mapped is None


def _same_subnet(
    a: ipaddress.IPv4Address | ipaddress.IPv6Address,
    b: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> bool:
    if a.version != b.version:
        return False
    network = ipaddress.ip_network(f"{a}/{_SUBNET_BITS[a.version]}", strict=False)
    return b in network


async def keep_alive(transport: Transport, destination: Address, every: float) -> None:
    """Sends a keep-alive to `destination` every `every` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        try:
            transport.keep_alive(destination)
        except OSError as exc:  # no route for now: the next one may get through
            log.debug("SIP keep-alive to %s:%d failed: %r", *destination, exc)
