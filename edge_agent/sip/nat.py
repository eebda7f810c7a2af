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
port, teaches nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re

from edge_agent.sip.addresses import parse_via, split_quoted
from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Headers, Response
from edge_agent.sip.transport import Address, Transport

__all__ = ["KEEPALIVE_S", "keep_alive", "learned", "seen_at", "stamp_via"]

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


def learned(response: Response, local: Address, public: Address | None) -> Address | None:
    """Our public address after the registrar's `response`: where it saw us when that is
    not `local`, None when it saw `local` (no NAT), `public` as it was when its Via
    cannot be read."""
    seen = seen_at(response, local)
    if seen is None:
        return public
    now = None if seen == local else seen
    if now != public:
        log.info("the registrar sees this agent at %s:%d (behind NAT: %s)", *seen, now is not None)
    return now


async def keep_alive(transport: Transport, destination: Address, every: float) -> None:
    """Sends a keep-alive to `destination` every `every` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        try:
            transport.keep_alive(destination)
        except OSError as exc:  # no route for now: the next one may get through
            log.debug("SIP keep-alive to %s:%d failed: %r", *destination, exc)
