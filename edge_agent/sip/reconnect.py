"""What the user agent does when its TLS connection to the PBX is made again.

The agent does not listen for TLS: the PBX reaches it over the connection the agent
made, which Via and Contact name by its address and port (docs/decisions/sip-tls.md).
When that connection is lost and made again it has another port, and:

- a request built while there was no connection names the old one: `restamp` writes
  the new connection's address into its Via and Contact before it leaves, also into a
  request sent again after the loss (`UserAgent.connection_lost`): with the old Via the
  PBX would take it for a retransmission and answer on the old connection, which is
  gone; with the new one it is a request of its own, answered here (a REGISTER or a BYE
  taken twice does no harm). Never into a CANCEL or an ACK, which must carry their
  INVITE's Via (RFC 3261 9.1, 17.1.1.3);
- the registration names the old one: the dialer registers again at once (RFC 5626
  4.4.1 does so for a flow that failed), so that requests outside a dialog (OPTIONS, a
  NOTIFY, the PBX's routing to the registered contact) find us;
- a running call's dialog names it as its remote target, where the PBX sends the
  member's BYE and INFO digits (RFC 3261 12.2.1.1): a REGISTER does not change that.
  `refresh_targets` sends each call a re-INVITE with the new Contact (a target refresh,
  RFC 3261 12.2 and 14.1), with our SDP as it stands (codec kept, same key under SRTP),
  and takes the answer as a re-INVITE's (hold, address, the peer's key).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from edge_agent.sip import sdp
from edge_agent.sip.call import Call
from edge_agent.sip.errors import SdpError, SipError
from edge_agent.sip.media_host import media_literal
from edge_agent.sip.message import Request, Response, parse_name_addr
from edge_agent.sip.ua import ALLOW, UserAgent

__all__ = ["refresh_targets", "restamp"]

log = logging.getLogger(__name__)


def restamp(ua: UserAgent, request: Request) -> None:
    """Writes the transport's address as it is now into `request`'s Via and Contact."""
    if request.method in ("CANCEL", "ACK"):
        return
    branch = request.branch
    request.headers.set("Via", ua.via(branch))
    request.remember_branch(branch)
    if request.headers.get("Contact") is not None:
        request.headers.set("Contact", ua.contact)


def refresh_targets(ua: UserAgent) -> None:
    """A target refresh for each call whose dialog is up (in the background)."""
    for dialog in list(ua.dialogs.values()):
        if isinstance(dialog, Call) and _established(dialog):
            ua.background(refresh_target(dialog))


def _established(call: Call) -> bool:
    media = call.media
    return (
        call.remote is not None
        and call.remote_target is not None
        and call.negotiated is not None
        and media is not None
        and not media.closed
        and not call.remote_bye.is_set()
    )


async def refresh_target(call: Call) -> None:
    """One re-INVITE telling the member's side our Contact as it is now; the call goes
    on as it was whatever the answer (a 491 or 488 leaves the old target)."""
    request = _reinvite(call)
    where = call.destination(call.remote_target or call.target)
    try:
        response = await call.ua.send_request(request, where)
        if response.status in (401, 407):  # a PBX that challenges in-dialog requests
            request = call.ua.authorize(request, response)
            call.cseq = request.cseq[0]
            response = await call.ua.send_request(request, where)
    except (SipError, OSError) as exc:  # a timeout, the connection lost again, a challenge
        log.warning("call %s: the target refresh after reconnecting failed: %s", call.call_id, exc)
        return
    if response.status // 100 != 2:
        log.warning(
            "call %s: the target refresh after reconnecting was answered %d %s",
            call.call_id,
            response.status,
            response.reason,
        )
        return
    _acknowledge(call, request, response, where)
    contact = response.headers.get_all("Contact")
    if contact:
        with contextlib.suppress(SipError):  # a refresh both ways (RFC 3261 12.2.1.2)
            call.remote_target = str(parse_name_addr(contact[0]).uri)
    _take_answer(call, response)
    log.info(
        "call %s: the member's side knows the new connection (%s)", call.call_id, call.ua.contact
    )


def _reinvite(call: Call) -> Request:
    invite, media, negotiated = call.invite, call.media, call.negotiated
    assert invite is not None and media is not None and negotiated is not None
    assert call.remote is not None and call.remote_target is not None
    call.cseq += 1
    request = call.ua.new_request(
        "INVITE",
        call.remote_target,
        str(call.remote),
        call_id=invite.call_id,
        from_tag=call.local_tag,
        cseq=call.cseq,
    )
    for route in call.route:
        request.headers.add("Route", route)
    request.headers.add("Allow", ALLOW)
    request.headers.add("Content-Type", "application/sdp")
    session = call.reoffers
    session.version += 1  # our SDP may differ from the last we sent (RFC 3264 8)
    request.body = sdp.offer(
        call.ua.transport.local[0],
        media.port,
        session.session,
        payloads=(negotiated.codec_pt, 101),
        session_version=session.version,
        proto=call.crypto.session_proto,
        crypto=call.crypto.session_lines(),
    )
    return request


def _acknowledge(call: Call, invite: Request, response: Response, where: tuple[str, int]) -> None:
    ack = call.ua.new_request(
        "ACK",
        call.remote_target or call.target,
        response.headers.get("To") or "",
        call_id=invite.call_id,
        from_tag=call.local_tag,
        cseq=invite.cseq[0],
    )
    ack.headers.remove("Contact")
    for route in call.route:
        ack.headers.add("Route", route)
    call.ua.transport.send(ack, where)
    call.ua.remember_ack(invite.call_id, ack, where)  # for the 2xx sent again


def _take_answer(call: Call, response: Response) -> None:
    """The member's answer, as for an offer of theirs: codec kept, address (an IP
    literal only: a name would need a lookup, and the media stay where they were),
    hold, and under SRTP its key."""
    try:
        answer = sdp.parse(response.body)
        negotiated = call.negotiated
        running = None if negotiated is None else (negotiated.codec_pt, negotiated.codec)
        found = sdp.negotiate(answer, running, secure=call.crypto.secure)
        literal = media_literal(found.address, call.family)
        call.crypto.reanswered(answer.proto, answer.crypto)
    except SdpError as exc:
        log.warning(
            "call %s: the answer to the target refresh cannot be used: %s", call.call_id, exc
        )
        return
    if literal is not None:
        call.negotiated = replace(found, address=literal)
    call.hold.follow(answer, call.call_id)
