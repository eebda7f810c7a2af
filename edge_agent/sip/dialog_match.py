"""Which of our dialogs an incoming request belongs to, and whether its sender may speak in it.

Before, an in-dialog request was routed by its Call-ID alone: a stranger who had
seen a Call-ID could confirm a call with an INFO "1" or end it with a BYE, from any
address and with any tags (issue 15, review). Now (docs/decisions/sip-dialog-match.md):

- tags (RFC 3261 12.2.2): a request names a dialog of ours by Call-ID, our tag in
  its To and the peer's tag in its From. A request with our Call-ID but other tags,
  or none, belongs to no dialog and gets 481 (an ACK is dropped). Before the peer's
  tag is known (no 2xx yet) a call takes no request; a dialog-state fetch takes the
  notifier's first NOTIFY whatever its From tag (RFC 6665 4.4.1: the NOTIFY makes it);
- the peer: the request must come from a host the dialog has heard of, the one its
  INVITE (or SUBSCRIBE) went to, the one the 2xx came from, the host of the 2xx's
  Contact and of the proxy nearest us in its Record-Route; any port of those hosts
  (a PBX may send from another port of its own, and NAT on our side changes our
  ports, not the PBX's). Hosts are compared as IP addresses; a host name counts for
  nothing. A request with the right tags from another host gets 403 and is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.sip.errors import SipError
from edge_agent.sip.message import Request, Response, parse_name_addr, response_to

log = logging.getLogger(__name__)

Address = tuple[str, int]
LOG_EVERY_S = 10.0


def host_key(host: str) -> str | None:
    """`host` as one spelling of an IP address (IPv4-mapped IPv6 as IPv4, no zone, no
    brackets); None for a host name or anything else."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass
class DialogPeer:
    """Who may speak in one dialog of ours: the peer's tag and the hosts it sends from."""

    local_tag: str
    # The peer's tag, from the 2xx that made the dialog ("" when it had none: RFC 2543);
    # None until then.
    remote_tag: str | None = None
    any_remote_tag: bool = False  # a subscription: the notifier's tag comes with its NOTIFY
    hosts: set[str] = field(default_factory=set)
    refused: int = 0  # requests with our tags from another host
    _logged_at: float = -LOG_EVERY_S

    def expect_from(self, host: str) -> None:
        """`host` may send requests in this dialog (an IP address; a name is ignored)."""
        key = host_key(host)
        if key is not None:
            self.hosts.add(key)

    def answered(self, response: Response, source: Address) -> None:
        """The 2xx that made the dialog came from `source`: the peer's tag and hosts."""
        try:
            self.remote_tag = response.to_tag or ""
        except SipError:
            return
        self.expect_from(source[0])
        for name, pick in (("Contact", 0), ("Record-Route", -1)):
            values = response.headers.get_all(name)
            if not values:
                continue
            try:
                self.expect_from(parse_name_addr(values[pick]).uri.host)
            except SipError:
                continue

    def names(self, request: Request) -> bool:
        """Whether `request`'s tags name this dialog (its Call-ID is looked up already)."""
        try:
            to_tag, from_tag = request.to_tag, request.from_tag
        except SipError:
            return False
        if to_tag != self.local_tag:
            return False
        if self.any_remote_tag:
            return True
        return self.remote_tag is not None and (from_tag or "") == self.remote_tag

    def admits(self, source: Address) -> bool:
        return host_key(source[0]) in self.hosts


class Dialog(Protocol):
    """What the user agent needs of a call (or a dialog-state fetch) to route requests to it."""

    @property
    def peer(self) -> DialogPeer: ...

    def handle(self, request: Request, source: Address) -> Response | None: ...


@dataclass(frozen=True)
class Match:
    """Where a request goes: `dialog` (None: outside any dialog) or `refusal`, the answer."""

    dialog: Dialog | None = None
    refusal: Response | None = None


OUTSIDE = Match()


def match(dialog: Dialog | None, request: Request, source: Address) -> Match:
    """The dialog under `request`'s Call-ID (`dialog`, if any) when the request is its
    peer's; 481 when it names none of ours, 403 when it comes from another host."""
    if dialog is None:
        return OUTSIDE  # not our Call-ID: a request outside any dialog
    peer = dialog.peer
    if not peer.names(request):
        return Match(refusal=_refusal(request, 481, "Call/Transaction Does Not Exist"))
    if not peer.admits(source):
        peer.refused += 1
        now = time.monotonic()
        if now - peer._logged_at >= LOG_EVERY_S:
            peer._logged_at = now
            log.warning(
                "%s in dialog %s refused: it came from %s, not from the dialog's peer %s "
                "(%d refused in this dialog)",
                request.method,
                request.call_id,
                source[0],
                ", ".join(sorted(peer.hosts)) or "(not known)",
                peer.refused,
            )
        return Match(refusal=_refusal(request, 403, "Forbidden (not the dialog's peer)"))
    return Match(dialog=dialog)


def _refusal(request: Request, status: int, reason: str) -> Response | None:
    if request.method == "ACK":
        return None  # never answered
    return response_to(request, status, reason)
