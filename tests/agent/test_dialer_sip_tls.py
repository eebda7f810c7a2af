"""SIP over TLS (issue 15, point 9): the dialer against baresip over TLS with a certificate
made by the test, and against TLS peers of the test's own for what baresip cannot show
(a registrar, a refused certificate, a required client certificate, a stalled handshake)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.dialer import make_dialer
from edge_agent.dialer.port import CallEventKind, CallOutcome, DialerError
from edge_agent.dialer.sip import SipDialer
from edge_agent.settings import AgentSettings
from edge_agent.sip.message import Request, Response, new_tag, response_to
from edge_agent.sip.registration import RegistrationState
from edge_agent.sip.srtp import Mode
from edge_agent.sip.tls import TlsConfig, TlsTransport, server_port
from edge_agent.sip.transport import Address
from edge_agent.sip.ua import Account
from tests.agent.dialer_contract import Recorder, assert_well_formed
from tests.agent.registrar import registered, until_state
from tests.agent.test_dialer_sip import (
    _best_correlation,
    _samples,
    announcement,
    call_request,
    ended,
)
from tests.agent.windows_fakes import as_on_windows
from tests.sip.bed import HOST, free_sip_port, need_baresip
from tests.sip.tls_bed import Authority, PlainWatch, TlsBaresip, TlsPeer

__all__ = ["announcement"]

K = CallEventKind
ANNOUNCEMENT_S = 1.0  # test_dialer_sip's tone


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "ca")


def tls_dialer(
    server: tuple[str, int], tls: TlsConfig, *, register: bool = False, **options: Any
) -> SipDialer:
    account = Account("Rundruf", "secret", HOST, server, register=register)
    return SipDialer(account, transport="TLS", tls=tls, **options)


@contextlib.asynccontextmanager
async def closing(dialer: SipDialer) -> AsyncIterator[SipDialer]:
    try:
        yield dialer
    finally:
        await dialer.close()


# ------------------------------------------------------------------ baresip over TLS


@pytest.mark.parametrize("srtp", ["off", "required"])
@pytest.mark.parametrize("platform", ["linux", "windows"])
async def test_a_call_over_tls_to_baresip_is_answered_heard_exactly_and_confirmed(
    ca: Authority,
    announcement: Path,
    tmp_path: Path,
    platform: str,
    srtp: Mode,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The interop row "baresip 1.0 over TLS (and SRTP)": answered, the announcement
    heard exactly, the member's 1 (RFC 4733 from baresip) confirms. The SRTP keys travel
    under TLS: no warning that they could be read (as over UDP, test_dialer_srtp.py)."""
    need_baresip()
    if platform == "windows":  # RTP through asyncio endpoints, as on the proactor loop
        as_on_windows(monkeypatch)
    mediaenc = "srtp-mand" if srtp == "required" else None
    with TlsBaresip(tmp_path, ca.issue("phone"), mediaenc=mediaenc) as phone:
        tls = TlsConfig(server_name=HOST, ca_file=ca.cert)
        async with closing(tls_dialer((HOST, phone.tls_port), tls, srtp=srtp)) as dialer:
            recorder = Recorder()
            presses: list[asyncio.Task[str]] = []

            async def press_1_after_the_announcement() -> str:
                await asyncio.sleep(ANNOUNCEMENT_S + 0.7)
                return await asyncio.to_thread(phone.command, "sndcode", "1")

            async def on_event(event: Any) -> None:
                await recorder(event)
                if event.kind is K.PLAYING:
                    presses.append(asyncio.create_task(press_1_after_the_announcement()))

            request = call_request("member", announcement, dtmf_timeout_s=5.0)
            outcome = await asyncio.wait_for(dialer.call(request, on_event), 30)
            assert_well_formed(recorder.events, outcome, request)
            await asyncio.gather(*presses)
            assert dialer.ua is not None
            # Every message went over the one TLS connection to the PBX (baresip here).
            assert dialer.ua.transport.name == "TLS"
            assert set(dialer.ua.transport.streams) == {(HOST, phone.tls_port)}  # type: ignore[attr-defined]
            await asyncio.sleep(0.5)
            recordings = phone.recordings()
    assert recorder.kinds == [
        K.STARTED,
        K.RINGING,
        K.ANSWERED,
        K.PLAYING,
        K.DTMF,
        K.CONFIRMED,
        K.ENDED,
    ], phone.log()
    assert recorder.first(K.DTMF).digit == "1"
    assert ended(recorder)[0] is CallOutcome.CONFIRMED
    assert "audio: send DTMF digit: '1'" in phone.log()
    assert "SRTP keys" not in caplog.text
    if srtp == "required":  # baresip decrypted what it recorded and encrypted its 1
        assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in phone.log(), phone.log()
    assert recordings, "baresip recorded nothing"
    assert _best_correlation(_samples(announcement), _samples(recordings[0])) > 0.99


# ------------------------------------------------------------- registrar over TLS


def registrar(request: Request) -> Response | None:
    """A registrar that challenges (MD5) and then grants what the Contact asks for."""
    if request.method != "REGISTER":
        return None
    if request.headers.get("Authorization") is None:
        response = response_to(request, 401, "Unauthorized", new_tag())
        response.headers.add(
            "WWW-Authenticate", 'Digest realm="rundruf.test", nonce="n1", algorithm=MD5'
        )
        return response
    response = response_to(request, 200, "OK", new_tag())
    response.headers.add("Contact", f"{request.headers.get('Contact')};expires=300")
    return response


def test_the_pbx_port_is_5061_for_tls_unless_another_is_set() -> None:
    assert server_port("TLS", None) == 5061
    assert server_port("TLS", 5060) == 5061  # the plain port left over from UDP
    assert server_port("TLS", 5081) == 5081
    assert server_port("UDP", None) == 5060
    assert server_port("TCP", 5070) == 5070


def test_the_settings_choose_tls_with_its_files_and_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "PBX": "sim",
        "DIALER": "sip",
        "SIP_TRANSPORT": "TLS",
        "SIP_SERVER_HOST": "pbx.example.test",
        "SIP_TLS_CA_FILE": str(tmp_path / "ca.pem"),
        "SIP_TLS_CERT_FILE": str(tmp_path / "agent.pem"),
    }.items():
        monkeypatch.setenv(f"RUNDRUF_AGENT_{name}", value)
    dialer = make_dialer(AgentSettings())  # type: ignore[call-arg]
    assert isinstance(dialer, SipDialer)
    assert dialer.transport_name == "TLS"
    assert dialer.account.server == ("pbx.example.test", 5061)
    assert dialer.tls == TlsConfig(
        server_name="pbx.example.test",
        ca_file=tmp_path / "ca.pem",
        cert_file=tmp_path / "agent.pem",
    )


async def test_the_dialer_registers_over_tls_showing_its_client_certificate(
    ca: Authority,
) -> None:
    agent = ca.issue("rundruf-agent", client=True)
    with TlsPeer(ca.issue("pbx"), registrar, client_ca=ca.cert) as pbx:
        tls = TlsConfig(HOST, ca_file=ca.cert, cert_file=agent.cert, key_file=agent.key)
        async with closing(tls_dialer((HOST, pbx.port), tls, register=True)) as dialer:
            await dialer.start()
            await registered(dialer)
            assert dialer.ua is not None
            local = dialer.ua.transport.local
            # The keep-alive between REGISTERs goes on the same connection (RFC 5626).
            dialer.ua.transport.keep_alive((HOST, pbx.port))
            async with asyncio.timeout(5):
                while not pbx.received.endswith(b"\r\n\r\n"):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert len(pbx.first_bytes) == 1  # one connection for all of it
    assert [r.method for r in pbx.requests[:2]] == ["REGISTER", "REGISTER"]
    register = pbx.requests[1]
    assert (register.headers.get("Via") or "").startswith(f"SIP/2.0/TLS {local[0]}:{local[1]};")
    # The PBX reaches the agent over the connection the agent made (no TLS listener).
    assert f"<sip:Rundruf@{local[0]}:{local[1]};transport=tls>" == register.headers.get("Contact")
    assert register.uri == f"sip:{HOST}"
    subjects = [dict(x[0] for x in c["subject"]) for c in pbx.client_certificates]  # type: ignore[attr-defined]
    assert {"commonName": "rundruf-agent"} in subjects
    assert all(first[:1] == b"\x16" for first in pbx.first_bytes)  # TLS from the first byte


@pytest.mark.parametrize("loop", ["prompt", "held up before the REGISTER"])
async def test_a_pbx_requiring_a_client_certificate_fails_the_registration_with_its_code(
    ca: Authority, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS 1.3: the handshake ends for the agent before the PBX has looked at its (here
    missing) certificate; the PBX's alert comes after it, and its close resets the
    connection (the agent's Finished unread there). When the agent's loop, busy, writes
    the REGISTER only after both arrived, the write fails with "connection reset" and
    the alert is never read. The code must be the same either way (it was a timeout)."""
    check = None if loop == "prompt" else threading.Event()
    if check is not None:
        send = TlsTransport.send

        def send_when_refused(self: TlsTransport, message: Any, address: Address) -> None:
            # The loop held up (time.sleep) as on a loaded machine: the PBX looks at the
            # certificate now, refuses and closes; then the REGISTER goes out as it would.
            check.set()
            deadline = time.monotonic() + 10
            while not pbx.errors and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # its close (the reset) follows the error
            monkeypatch.setattr(TlsTransport, "send", send)
            send(self, message, address)

        monkeypatch.setattr(TlsTransport, "send", send_when_refused)
    with TlsPeer(ca.issue("pbx"), registrar, client_ca=ca.cert, check_client_when=check) as pbx:
        tls = TlsConfig(HOST, ca_file=ca.cert)  # no client certificate configured
        async with closing(tls_dialer((HOST, pbx.port), tls, register=True)) as dialer:
            with contextlib.suppress(DialerError):  # TLS 1.2 says so in the handshake
                await dialer.start()
            await until_state(dialer, RegistrationState.FAILED)
            error = dialer.registration_status().last_error
    assert error is not None
    assert error.code == "tlsClientCertificate", error
    assert error.params["host"] == HOST
    assert not pbx.requests


# ------------------------------------------------- certificates refused, no fall-back


@contextlib.contextmanager
def plain_watches(port: int) -> Iterator[list[PlainWatch]]:
    """Plain SIP listeners where a fall-back would go: UDP on the TLS port, and UDP and
    TCP on 5060 when it is free here."""
    with contextlib.ExitStack() as stack:
        watches = [stack.enter_context(PlainWatch(port, tcp=False))]
        with contextlib.suppress(OSError):
            watches.append(stack.enter_context(PlainWatch(5060)))
        yield watches


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("untrusted CA", "unable to get local issuer certificate"),
        ("wrong name", "IP address mismatch"),
    ],
)
async def test_a_refused_pbx_certificate_stops_the_dialer_with_its_code_and_nothing_goes_plain(
    ca: Authority, tmp_path: Path, case: str, reason: str
) -> None:
    if case == "untrusted CA":
        certificate = Authority(tmp_path / "other", "Somebody Else CA").issue("pbx")
    else:  # signed by the trusted CA, but for another host than the configured one
        certificate = ca.issue("pbx", hosts=("pbx.example.test",))
    with TlsPeer(certificate, registrar) as pbx, plain_watches(pbx.port) as watches:
        tls = TlsConfig(HOST, ca_file=ca.cert)
        async with closing(tls_dialer((HOST, pbx.port), tls, register=True)) as dialer:
            with pytest.raises(DialerError, match="certificate"):
                await dialer.start()
            error = dialer.registration_status()
            assert error.state is RegistrationState.FAILED
            # A call fails as the start does, within the hold-off without a handshake of
            # its own (tls_link.py), with the code for the history; nothing goes plain.
            with pytest.raises(DialerError) as refused:
                await dialer.call(call_request("member", tmp_path / "a.wav"), Recorder())
            await asyncio.sleep(1.0)
    assert error.last_error is not None
    assert error.last_error.code == "tlsCertificate"
    assert error.last_error.params["host"] == HOST
    assert reason in str(error.last_error.params["reason"])
    assert refused.value.code == "tlsCertificate"
    assert len(pbx.first_bytes) == 1 and all(b[:1] == b"\x16" for b in pbx.first_bytes)
    assert not pbx.requests
    assert [w.arrived for w in watches] == [[] for _ in watches]


async def test_a_certificate_refused_on_reconnecting_ends_the_calls_at_once_with_503(
    ca: Authority, announcement: Path, tmp_path: Path
) -> None:
    """The PBX's connection drops and it comes back with a certificate the agent does not
    trust: the INVITEs fail at once (RFC 3261 8.1.3.1: 503) with the code, not after
    32 s as "no answer", and an alarm's many calls cost the PBX one handshake (the
    agent's own attempt to connect again, a second after it, another), not one each."""
    trusted = TlsPeer(ca.issue("pbx"), registrar)
    with trusted:
        tls = TlsConfig(HOST, ca_file=ca.cert)
        dialer = tls_dialer((HOST, trusted.port), tls)
        await dialer.start()
    assert dialer.ua is not None
    transport = dialer.ua.transport
    assert isinstance(transport, TlsTransport)
    link = transport.link()
    stranger = Authority(tmp_path / "other", "Somebody Else CA").issue("pbx")
    async with closing(dialer):
        with TlsPeer(stranger, registrar, port=trusted.port) as impostor:
            async with asyncio.timeout(10):  # the agent tried to connect again, and met it
                while getattr(link.remembered(), "code", None) != "tlsCertificate":  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            recorders = [Recorder() for _ in range(20)]
            started = time.monotonic()
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        dialer.call(
                            call_request(
                                "member", announcement, call_id=f"c{n}", ring_timeout_s=20.0
                            ),
                            recorder,
                        )
                        for n, recorder in enumerate(recorders)
                    )
                ),
                30,
            )
            took = time.monotonic() - started
            await asyncio.sleep(0.8)  # the sends queued behind the first connection go too
    assert set(outcomes) == {CallOutcome.FAILED}
    # The code for the history, worded by the website (point 8 of the outside review).
    assert {ended(recorder)[1] for recorder in recorders} == {"tlsCertificate"}
    assert took < 5.0
    assert 1 <= len(impostor.first_bytes) <= 2
    assert not impostor.requests


async def test_a_stalled_handshake_is_given_up_with_its_code(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(4)  # accepts (the kernel does) and never says a word
    try:
        tls = TlsConfig(HOST, handshake_timeout_s=0.5)
        async with closing(tls_dialer((HOST, silent.getsockname()[1]), tls)) as dialer:
            started = time.monotonic()
            with pytest.raises(DialerError, match="TLS handshake"):
                await dialer.start()
            took = time.monotonic() - started
            error = dialer.registration_status().last_error
    finally:
        silent.close()
    assert took < 3.0
    assert error is not None and error.code == "tlsHandshake"


async def test_nothing_listening_at_the_tls_port_is_connect_failed() -> None:
    port = free_sip_port()
    async with closing(tls_dialer((HOST, port), TlsConfig(HOST))) as dialer:
        with pytest.raises(DialerError, match="no connection"):
            await dialer.start()
        error = dialer.registration_status().last_error
    assert error is not None
    assert (error.code, error.params["port"]) == ("connectFailed", port)


# ---------------------------------------------------------------- unusable files


@pytest.mark.parametrize("case", ["missing CA", "not a CA", "encrypted key", "key alone"])
async def test_unusable_tls_files_stop_the_start_with_tls_config(
    ca: Authority, tmp_path: Path, case: str
) -> None:
    locked = ca.issue("rundruf-agent", client=True, passphrase=b"secret-passphrase")
    tls = {
        "missing CA": TlsConfig(HOST, ca_file=tmp_path / "nowhere.pem"),
        "not a CA": TlsConfig(HOST, ca_file=locked.key),
        # Never a prompt for the passphrase on a console the service does not have.
        "encrypted key": TlsConfig(HOST, cert_file=locked.cert, key_file=locked.key),
        "key alone": TlsConfig(HOST, key_file=locked.key),
    }[case]
    async with closing(tls_dialer((HOST, 9), tls)) as dialer:
        with pytest.raises(DialerError):
            await asyncio.wait_for(dialer.start(), 10)
        error = dialer.registration_status().last_error
    assert error is not None and error.code == "tlsConfig"
    assert str(error.params["setting"]).startswith("RUNDRUF_AGENT_SIP_TLS_")


def test_an_encrypted_key_is_refused_without_asking_on_the_console(
    ca: Authority, tmp_path: Path
) -> None:
    """OpenSSL asks for a key's passphrase on the terminal unless told otherwise: an agent
    started by hand would wait there for ever. Run on a pseudo-terminal to see it."""
    pty = pytest.importorskip("pty")  # POSIX; the callback that prevents it is the same
    locked = ca.issue("rundruf-agent", client=True, passphrase=b"secret-passphrase")
    script = (
        "from pathlib import Path\n"
        "from edge_agent.sip.tls import TlsConfig, TransportFailure, client_context\n"
        f"config = TlsConfig('pbx', cert_file=Path({str(locked.cert)!r}),"
        f" key_file=Path({str(locked.key)!r}))\n"
        "try:\n    client_context(config)\n"
        "except TransportFailure as exc:\n    print('CODE', exc.code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    pid, terminal = pty.fork()
    if pid == 0:  # the child, on the pseudo-terminal
        os.execve(sys.executable, [sys.executable, "-c", script], env)
    said = b""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # the child is gone (EIO)
                    break
                if not chunk:
                    break
                said += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(terminal)
    assert b"pass phrase" not in said.lower(), said
    assert b"CODE tlsConfig" in said, said
