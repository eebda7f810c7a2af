"""Whether members are on the phone, from the PBX's dialog event package (RFC 4235).

One fetch per member (RFC 6665 4.4.3): SUBSCRIBE with `Event: dialog` and
`Expires: 0` asks the notifier for a single NOTIFY with the current state and
`Subscription-State: terminated`; no subscription is left to refresh or end.
The NOTIFY may overtake the SUBSCRIBE's 2xx (RFC 6665 4.1.2.4), so the fetch
listens under the SUBSCRIBE's Call-ID before it sends.

A PBX without the package answers 489 Bad Event (or 405, 404, 403); that, a
challenge we cannot answer, silence, and a body we cannot read all give None:
the state is unknown, and the member is called anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping
from typing import TypeVar

from edge_agent.sip.dialog_info import CONTENT_TYPE, DialogInfo, busy
from edge_agent.sip.dialog_match import DialogPeer
from edge_agent.sip.errors import DialogInfoError, SipError
from edge_agent.sip.message import Request, Response, parse_uri, response_to
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import UserAgent

log = logging.getLogger(__name__)

EVENT = "dialog"
K = TypeVar("K", bound=Hashable)


def _first_token(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


class DialogFetch:
    """The one-shot subscription as the user agent sees it: takes the NOTIFY, answers 200,
    and puts what it says in `result` (True busy, False idle, None unknown)."""

    def __init__(self, local_tag: str, result: asyncio.Future[bool | None]) -> None:
        self.local_tag = local_tag  # the SUBSCRIBE's From tag: the NOTIFY's To tag
        self.result = result
        # The NOTIFY comes from where the SUBSCRIBE went (or its 2xx came from), with
        # the notifier's tag, which nothing told us before (RFC 6665 4.4.1).
        self.peer = DialogPeer(local_tag, any_remote_tag=True)

    def handle(self, request: Request, source: Address) -> Response | None:
        if request.method == "ACK":
            return None
        if request.method != "NOTIFY":
            response = response_to(request, 405, "Method Not Allowed")
            response.headers.add("Allow", "NOTIFY")
            return response
        if request.to_tag != self.local_tag:
            return response_to(request, 481, "Subscription Does Not Exist")
        if _first_token(request.headers.get("Event")) != EVENT:
            response = response_to(request, 489, "Bad Event")
            response.headers.add("Allow-Events", EVENT)
            return response
        self._take(request)
        return response_to(request, 200, "OK")

    def _take(self, notify: Request) -> None:
        if self.result.done():  # a second NOTIFY, or the fetch gave up
            return
        terminated = _first_token(notify.headers.get("Subscription-State")) == "terminated"
        if not notify.body:
            # RFC 6665 4.1.3: no state to give (rejected, no such resource, or pending
            # authorisation, when the state would come in a later NOTIFY).
            if terminated:
                self.result.set_result(None)
            return
        kind = _first_token(notify.headers.get("Content-Type"))
        if kind != CONTENT_TYPE:
            log.info("dialog NOTIFY with a %s body; state unknown", kind or "untyped")
            self.result.set_result(None)
            return
        try:
            info = DialogInfo.parse(notify.body)
        except DialogInfoError as exc:
            log.info("dialog NOTIFY with an unusable body: %s", exc)
            self.result.set_result(None)
            return
        self.result.set_result(busy(info))


async def fetch_dialog_state(
    ua: UserAgent,
    uri: str,
    destination: Address | None = None,
    timeout: float = 2.0,  # noqa: ASYNC109 - running out of time is an answer: None
) -> bool | None:
    """True when the PBX says `uri` is on the phone, False when idle, None when it cannot say.

    `destination` is where the SUBSCRIBE goes (the PBX as outbound proxy); None: the
    URI's host. `timeout` bounds the whole fetch, a challenge and the NOTIFY included.
    A 401 and a 407 are answered once each. Never raises a SIP error: not knowing means calling.
    """
    request = ua.new_request("SUBSCRIBE", uri, f"<{uri}>")
    request.headers.add("Event", EVENT)
    request.headers.add("Accept", CONTENT_TYPE)
    request.headers.add("Expires", "0")
    call_id, tag = request.call_id, request.from_tag or ""
    fetch = DialogFetch(tag, asyncio.get_running_loop().create_future())
    ua.dialogs[call_id] = fetch
    try:
        async with asyncio.timeout(timeout):
            if destination is None:
                parsed = parse_uri(uri)
                destination = (parsed.host, parsed.port or 5060)
            fetch.peer.expect_from(destination[0])
            _, response, _ = await ua.send_authorized(request, destination)
            if response.status // 100 != 2:
                log.debug("%s: SUBSCRIBE refused: %d %s", uri, response.status, response.reason)
                return None
            return await fetch.result
    except TimeoutError:
        log.debug("%s: no dialog state within %g s", uri, timeout)
        return None
    except SipError as exc:  # a bad URI, a challenge we cannot answer, no answer at all
        log.info("%s: no dialog state: %s", uri, exc)
        return None
    finally:
        if ua.dialogs.get(call_id) is fetch:
            del ua.dialogs[call_id]


async def dialog_states(
    ua: UserAgent,
    uris: Mapping[K, str],
    destination: Address | None = None,
    *,
    concurrency: int = 20,
    timeout: float = 2.0,  # noqa: ASYNC109 - each fetch's own, as in fetch_dialog_state
) -> dict[K, bool | None]:
    """`fetch_dialog_state` for each URI, at most `concurrency` at once, by the same keys."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limit = asyncio.Semaphore(concurrency)

    async def one(uri: str) -> bool | None:
        async with limit:
            return await fetch_dialog_state(ua, uri, destination, timeout)

    found = await asyncio.gather(*(one(uri) for uri in uris.values()))
    states = dict(zip(uris, found, strict=True))
    log.info(
        "dialog states of %d members: %d busy, %d idle, %d unknown",
        len(states),
        found.count(True),
        found.count(False),
        found.count(None),
    )
    return states
