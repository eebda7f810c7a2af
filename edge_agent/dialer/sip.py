"""The SIP dialer: calls members through the PBX as its user "Rundruf" (or any SIP peer).

One user agent, one transport and one RTP pacer serve every call; a call is a
coroutine. Alarm calls carry the auto-answer / intrusion headers of the PBX
profile (`sip_profiles.py`). The announcement is the telephony master,
encoded to the negotiated G.711 law once per file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.dialer.common import Emitter, UnplayableAnnouncement, held, open_master
from edge_agent.dialer.port import (
    CallEventKind,
    CallOutcome,
    CallRequest,
    Dialer,
    DialerClosed,
    DialerError,
    DuplicateCall,
    EventSink,
)
from edge_agent.dialer.sip_play import Announcement
from edge_agent.dialer.sip_profiles import alarm_headers
from edge_agent.error_text import describe
from edge_agent.sip import g711, nat, reconnect
from edge_agent.sip.addresses import format_host
from edge_agent.sip.call import Call, Ended
from edge_agent.sip.called_number import CalledNumber
from edge_agent.sip.errors import SipError
from edge_agent.sip.incoming import IncomingCalls, Router
from edge_agent.sip.message import Request, Response
from edge_agent.sip.pacer import Pacer
from edge_agent.sip.peers import Networks, peer_key
from edge_agent.sip.registration import (
    Registration,
    RegistrationError,
    RegistrationStatus,
)
from edge_agent.sip.srtp import Mode as SrtpMode
from edge_agent.sip.subscription import dialog_states
from edge_agent.sip.tls import TlsConfig, TlsTransport, TransportFailure
from edge_agent.sip.transport import Address, TcpTransport, Transport, UdpTransport
from edge_agent.sip.ua import Account, UserAgent

log = logging.getLogger(__name__)

# Final SIP answers and what they mean for a broadcast.
OUTCOMES: dict[int, tuple[CallOutcome, str]] = {
    486: (CallOutcome.BUSY, "busy"),
    600: (CallOutcome.BUSY, "busy everywhere"),
    603: (CallOutcome.REJECTED, "declined"),
    480: (CallOutcome.NO_ANSWER, "not available"),
    408: (CallOutcome.NO_ANSWER, "no answer"),
    487: (CallOutcome.NO_ANSWER, "no answer within the ring timeout"),
    404: (CallOutcome.FAILED, "no such extension"),
    484: (CallOutcome.FAILED, "incomplete number"),
    410: (CallOutcome.FAILED, "the number is gone"),
}


PACER_LANES = 4
# The longest a start waits for the PBX's name: a resolver that hangs must not hold up
# an alarm call for longer (the agent's heartbeat and command channel never wait for it).
RESOLVE_TIMEOUT_S = 10.0

_FileVersion = tuple[Path, int, int]  # path, mtime, size


@dataclass(frozen=True)
class _Master:
    key: _FileVersion
    frames: bytes


class SipDialer(Dialer):
    kind = "sip"

    def __init__(
        self,
        account: Account,
        *,
        local: Address = ("127.0.0.1", 0),
        transport: str = "UDP",
        proxy: bool = True,
        profile: str = "generic",
        max_parallel: int = 100,
        check_s: float = 60.0,
        tls: TlsConfig | None = None,
        srtp: SrtpMode = "off",
        pbx_addresses: Networks = (),
        called_number: CalledNumber = "auto",
        trigger_sources: Networks = (),
        number_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.account = account
        # Incoming calls (issue 16): who takes them (`answer_calls`), and where the called
        # number stands in their INVITEs (RUNDRUF_AGENT_SIP_CALLED_NUMBER).
        self.called_number: CalledNumber = called_number
        self.number_prefixes = number_prefixes  # RUNDRUF_AGENT_SIP_NUMBER_PREFIXES
        self._router: Router | None = None
        # The PBX's other addresses (its nodes, interfaces; RUNDRUF_AGENT_SIP_PBX_ADDRESSES):
        # its connections and datagrams from there are a peer's, not a stranger's.
        self.pbx_addresses = pbx_addresses
        # Who may call in besides the PBX (RUNDRUF_AGENT_SIP_TRIGGER_SOURCES), and the
        # addresses the PBX's name resolved to (known at the start).
        self.trigger_sources = trigger_sources
        self._pbx_hosts: frozenset[str] = frozenset()
        # SRTP for every call: off, optional or required (sip/srtp.py; the PBX's setting).
        self.srtp: SrtpMode = srtp
        self.local = local
        self.transport_name = transport.upper()
        # SIP over TLS: whom to trust, the name the PBX's certificate must carry (sip/tls.py).
        self.tls = tls or TlsConfig(server_name=account.server[0])
        self.use_proxy = proxy
        self.profile = profile
        self._max_parallel = max_parallel
        self.ua: UserAgent | None = None
        # Four 5 ms slots: 500 calls are four short bursts of RTP, not one long one.
        self.pacer = Pacer(lanes=PACER_LANES)
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._masters: dict[_FileVersion, _Master] = {}
        self._encoded: dict[tuple[_FileVersion, str], bytes] = {}
        self._closed = False
        self._started = asyncio.Lock()
        self.registration = Registration(
            self._register, enabled=account.register, check_s=check_s, hide=[account.password]
        )
        self._registering: asyncio.Task[None] | None = None
        self._tls_transport: TlsTransport | None = None  # kept from a start that failed
        self._resolving: asyncio.Future[list[Any]] | None = None

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    def registration_status(self) -> RegistrationStatus:
        return self.registration.status

    def on_status_change(self, listener: Callable[[], None]) -> None:
        self.registration.on_change(listener)

    async def _register(self) -> int:
        assert self.ua is not None
        return await self.ua.register_once()

    async def start(self) -> None:
        """Binds the transport, starts the pacer and (if configured) the registration.

        Raises DialerError when the PBX's name does not resolve, the local address
        cannot be bound or (TLS) the PBX cannot be reached or trusted; the registration
        status says so with its code until a later start (the
        next call, or the service's next heartbeat) succeeds.
        """
        async with self._started:
            if self.ua is not None:
                return
            if self._closed:
                raise DialerClosed("The dialer is closed")
            transport = await self._open()
            if self._closed:  # closed while the name was looked up
                transport.close()
                raise DialerClosed("The dialer is closed")
            self.ua = UserAgent(self.account, transport)  # told of its connections' failures
            self._install_router()
            if isinstance(transport, TlsTransport):
                # A connection made again after a loss has another address: the PBX and
                # the running calls' members learn it (sip/reconnect.py).
                transport.restamp = functools.partial(reconnect.restamp, self.ua)
                transport.on_remade.append(self._reconnected)
            elif self.srtp != "off":
                log.warning(
                    "SRTP is %s, but SIP goes over %s: the SRTP keys in each SDP can be read "
                    "on the way (RUNDRUF_AGENT_SIP_TRANSPORT=TLS protects them)",
                    self.srtp,
                    self.transport_name,
                )
            self._tasks.append(asyncio.create_task(self.pacer.run(), name="rtp-pacer"))
            self.registration.ready()
            self._registering = asyncio.create_task(self.registration.run(), name="sip-register")
            if self.account.register or self.use_proxy:  # the PBX's way back to us stays open
                alive = nat.keep_alive(transport, self.account.server, nat.KEEPALIVE_S)
                self._tasks.append(asyncio.create_task(alive, name="sip-keepalive"))

    def answer_calls(self, router: Router | None) -> None:
        """Incoming calls go to `router` from now on (at the start, if not started yet);
        None declines them again (603). See sip/incoming.py."""
        self._router = router
        if self.ua is not None:
            self._install_router()

    def _install_router(self) -> None:
        assert self.ua is not None
        if self._router is None:
            self.ua.incoming = None
            return
        self.ua.incoming = IncomingCalls(
            self.ua,
            self._router,
            called_number=self.called_number,
            number_prefixes=self.number_prefixes,
            srtp=self.srtp,
            pacer=self.pacer,
            proxy=self.account.server if self.use_proxy else None,
            trusted_hosts=self._pbx_hosts,
            trusted=self.pbx_addresses + self.trigger_sources,
        )

    async def _open(self) -> Transport:
        """Resolves the PBX once (no DNS lookup on the loop per message) and binds."""

        def receive(message: Request | Response, source: Address, via: Transport) -> None:
            if self.ua is not None:  # (TLS: the connection comes first, the UA right after)
                self.ua.receive(message, source, via)

        host, port = self.local
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - refused, not bound
            # The address goes into Via, Contact and the SDP: it must be reachable.
            raise self._cannot_start(
                "localAddress",
                "the SIP dialer needs a concrete local address, not a wildcard",
                address=host or "(empty)",
            )
        server_host, server_port = self.account.server
        try:
            addresses = await self._resolve(server_host, server_port)
        except (OSError, TimeoutError) as exc:
            why = str(exc) or f"no answer within {RESOLVE_TIMEOUT_S:g} s"
            text = f"the PBX {server_host!r} cannot be resolved: {why}"
            raise self._cannot_start("unresolvable", text, host=server_host[:100]) from exc
        self.account = replace(self.account, server=(addresses[0], server_port))
        if self.transport_name == "TLS":
            transport = await self._open_tls(host, receive)
        else:
            kind = TcpTransport if self.transport_name == "TCP" else UdpTransport
            try:
                transport = await kind.listen(host, port, receive)
            except OSError as exc:
                text = f"cannot listen on {host}:{port}: {exc}"
                raise self._cannot_start("network", text) from exc
        self._know_the_pbx(transport, addresses, server_port)
        self._pbx_hosts = frozenset(peer_key(address) for address in addresses)
        return transport

    def _know_the_pbx(self, transport: Transport, addresses: list[str], port: int) -> None:
        """Every address the PBX's name resolves to, and the ones configured, are a known
        peer's from the start: its connections get the peers' places
        (sip/stream_table.py), its datagrams are never limited by rate (sip/intake.py)."""
        if isinstance(transport, TcpTransport):  # TLS too
            for address in addresses:
                transport.learn(address)
            transport.trust(self.pbx_addresses)
        elif isinstance(transport, UdpTransport):
            for address in addresses:
                transport.intake.trust((address, port))
            transport.intake.trust_hosts(self.pbx_addresses)

    async def _open_tls(
        self, host: str, receive: Callable[[Request | Response, Address, Transport], None]
    ) -> Transport:
        """The TLS connection to the PBX, made now: a certificate it cannot trust stops
        the start with its code, and nothing is ever sent over TCP or UDP instead.

        The transport outlives a start that fails: the starts of calls that wait
        together share its one attempt, and within its hold-off after a failure fail
        at once the same way (one handshake, not one per call: `tls_link.py`)."""
        transport = self._tls_transport
        try:
            if transport is None or transport.server != self.account.server:
                if transport is not None:
                    transport.close()
                    self._tls_transport = None
                transport = await TlsTransport.create(host, self.account.server, receive, self.tls)
                self._tls_transport = transport
            await transport.connect()
        except TransportFailure as exc:
            raise self._cannot_start(exc.code, str(exc), **exc.params) from exc
        return transport

    def _reconnected(self) -> None:
        """The connection to the PBX is there again, from another port: registered again
        at once, and each running call tells its member (a target refresh)."""
        assert self.ua is not None
        if self.account.register:
            self.registration.refresh_now()
        reconnect.refresh_targets(self.ua)

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The PBX's addresses, the one to send to first, within RESOLVE_TIMEOUT_S
        (raises TimeoutError after it).

        The lookup runs in the loop's thread pool and cannot be stopped there; one that
        hangs is waited for again by the next start instead of a new one, so a resolver
        that never answers holds one thread, not one per heartbeat."""
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.ensure_future(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            )
            # Its failure is read by whoever awaits it; one nobody waits for any more is
            # not an error to log.
            self._resolving.add_done_callback(lambda f: f.cancelled() or f.exception())
        resolving = self._resolving
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.shield(resolving)
        # A name may stand for a cluster, or for both address families: each is the PBX's.
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def _cannot_start(self, code: str, text: str, **params: str | int) -> DialerError:
        """Records why the dialer cannot start (the health report shows it) and says it."""
        self.registration.failed(RegistrationError(code, datetime.now(UTC), params, text))
        return DialerError(text, code=code)

    async def call(self, request: CallRequest, on_event: EventSink) -> CallOutcome:
        if self._closed:
            raise DialerClosed("The dialer is closed")
        if request.call_id in self._running:
            raise DuplicateCall(f"The call {request.call_id} is still running")
        await self.start()
        emitter = Emitter(request.call_id, on_event)
        # The call runs as a task of its own: `close` cancels it, and the caller gets
        # FAILED "dialer closed" back instead of a cancellation of its own task.
        work = asyncio.create_task(self._call(request, emitter), name=request.call_id)
        self._running[request.call_id] = work
        try:
            return await work
        except (DialerClosed, DuplicateCall):
            raise
        except Exception as exc:  # a bug must end this call, not the whole broadcast
            log.exception("SIP call %s failed unexpectedly", request.call_id)
            if not emitter.ended:
                # Fields, not the repr: the detail is shown in the history.
                detail = f"internal error: {describe(exc, hide=[self.account.password])}"
                await emitter.end(CallOutcome.FAILED, detail[:200])
            return CallOutcome.FAILED
        except asyncio.CancelledError:
            mine = asyncio.current_task()
            if mine is not None and mine.cancelling():
                if not emitter.ended:
                    await emitter.end(CallOutcome.FAILED, "cancelled")
                raise
            if not emitter.ended:
                await emitter.end(CallOutcome.FAILED, "dialer closed")
            return CallOutcome.FAILED
        finally:
            self._running.pop(request.call_id, None)

    def _uri(self, target: str) -> str:
        if target.startswith(("sip:", "sips:")):
            return target
        if "@" in target:
            return f"sip:{target}"
        return f"sip:{target}@{format_host(self.account.domain)}"

    async def _call(self, request: CallRequest, emit: Emitter) -> CallOutcome:
        started = f"{request.target} ({request.display_name})"
        try:
            master = await self._master(request.announcement)  # no suspension once read
        except UnplayableAnnouncement as exc:
            await emit.emit(CallEventKind.STARTED, started)
            return await emit.end(CallOutcome.FAILED, str(exc))
        assert self.ua is not None
        headers = alarm_headers(self.profile) if request.priority else {}
        proxy = self.account.server if self.use_proxy else None
        call = Call(self.ua, self._uri(request.target), headers, proxy, srtp=self.srtp)
        try:
            # The INVITE leaves before the first event is awaited: a fan-out of hundreds
            # of calls sends every INVITE in one pass of the loop, whatever the sink does.
            try:
                call.begin()
            except (OSError, SipError) as exc:  # no socket left, say
                await emit.emit(CallEventKind.STARTED, started)
                return await emit.end(CallOutcome.FAILED, f"cannot place the call: {exc}")
            await emit.emit(CallEventKind.STARTED, started)
            return await self._converse(call, request, master, emit)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(call.hang_up())

    async def _converse(
        self, call: Call, request: CallRequest, master: _Master, emit: Emitter
    ) -> CallOutcome:
        async def ringing() -> None:
            await emit.emit(CallEventKind.RINGING)

        result = await call.start(request.ring_timeout_s, ringing)
        if isinstance(result, Ended) and result.code is not None:
            return await emit.end(CallOutcome.FAILED, result.code)  # e.g. srtpRequired
        if isinstance(result, Ended):
            outcome, text = OUTCOMES.get(result.status, (CallOutcome.FAILED, ""))
            return await emit.end(outcome, text or f"{result.status} {result.reason}")
        await emit.emit(CallEventKind.ANSWERED)
        negotiated = call.negotiated
        assert negotiated is not None
        payload = self._encode(master, negotiated.codec)
        stop = await self._stop_payload(request, negotiated.codec)
        announcement = Announcement(
            self.pacer, call, request, payload, negotiated.codec_pt, emit, stop_payload=stop
        )
        return await announcement.run()

    async def _stop_payload(self, request: CallRequest, codec: str) -> bytes | None:
        """The stop notice in the call's codec (issue 17); None: the call just ends."""
        if request.stopped is None or request.stop_notice is None:
            return None
        try:
            return self._encode(await self._master(request.stop_notice), codec)
        except UnplayableAnnouncement as exc:
            log.warning("the stop notice cannot be played: %s", exc)
            return None

    async def _master(self, path: Path) -> _Master:
        """The announcement's PCM, read once per file version: 500 calls share one copy."""
        data = held(path)  # kept in memory: a full disk could not take it
        if data is not None:
            key = (path, 0, len(data))
        else:
            try:
                stat = path.stat()  # noqa: ASYNC240 - one stat, cheaper than a thread hop
            except OSError as exc:
                raise UnplayableAnnouncement(
                    f"the announcement {path} cannot be read: {exc}"
                ) from exc
            key = (path, stat.st_mtime_ns, stat.st_size)
        master = self._masters.get(key)
        if master is None:
            _, frames = await asyncio.to_thread(open_master, path, read_frames=True)
            master = self._masters[key] = _Master(key, frames)
        return master

    def _encode(self, master: _Master, codec: str) -> bytes:
        """The master in the negotiated G.711 law, encoded once per file version and law."""
        encoded = self._encoded.get((master.key, codec))
        if encoded is None:
            encode = g711.alaw_encode if codec == "PCMA" else g711.ulaw_encode
            encoded = self._encoded[(master.key, codec)] = encode(master.frames)
        return encoded

    async def close(self) -> None:
        self._closed = True
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._registering is not None:
            # Stopped before the de-registration, which would otherwise race a refresh.
            self._registering.cancel()
            await asyncio.gather(self._registering, return_exceptions=True)
            await self.registration.settle(2.0)
        if self.ua is not None and self.account.register:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.ua.register_once(expires=0)
        if self._resolving is not None:
            self._resolving.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ua is not None:
            await self.ua.close()
        elif self._tls_transport is not None:  # no start succeeded
            self._tls_transport.close()

    async def busy_members(self, extensions: Mapping[str, str]) -> dict[str, bool | None]:
        """Whether each member (key -> extension) is on the phone, by the PBX's dialog event
        package (RFC 4235): True busy, False idle, None where the PBX cannot say."""
        if self._closed:
            return {key: None for key in extensions}
        await self.start()
        assert self.ua is not None
        uris = {key: self._uri(extension) for key, extension in extensions.items()}
        return await dialog_states(self.ua, uris, self.account.server if self.use_proxy else None)
