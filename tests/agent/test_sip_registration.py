"""The SIP dialer's registration at the PBX: at start, refreshed at each check, and what
the health report says when the registrar refuses or does not answer. The registrar is
SIPp on loopback (tests/sip/scenarios/uas_register*.xml)."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.dialer import sip as sip_dialer_module
from edge_agent.dialer.port import DialerError
from edge_agent.dialer.sip import SipDialer
from edge_agent.sip import ua
from edge_agent.sip.errors import DigestError
from edge_agent.sip.message import Request, new_tag, parse, response_to
from edge_agent.sip.registration import (
    MIN_REFRESH_S,
    Registration,
    RegistrationState,
    error_of,
    refresh_in,
)
from edge_agent.sip.ua import Account, RegistrationNotGranted, RegistrationRefused, SipTimeout
from tests.agent.registrar import Answer, registered, scripted_registrar, until_state
from tests.sip.bed import SippUas, free_sip_port, need_sipp

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@asynccontextmanager
async def sip_dialer(port: int, check_s: float = 60.0) -> AsyncIterator[SipDialer]:
    dialer = SipDialer(
        Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", port)), check_s=check_s
    )
    try:
        yield dialer
    finally:
        await dialer.close()


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Polls: some conditions are in SIPp's trace file, which no event announces."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def _call_ids_and_cseqs(registers: list[str]) -> tuple[set[str], list[int]]:
    call_ids = {re.search(r"Call-ID: (\S+)", r, re.IGNORECASE)[1] for r in registers}  # type: ignore[index]
    cseqs = [int(re.search(r"CSeq: (\d+)", r, re.IGNORECASE)[1]) for r in registers]  # type: ignore[index]
    return call_ids, cseqs


async def test_the_dialer_registers_when_it_starts_and_again_at_every_check(
    tmp_path: Path,
) -> None:
    need_sipp()
    with SippUas("uas_register.xml", tmp_path) as pbx:
        async with sip_dialer(pbx.port, check_s=1.0) as dialer:
            assert dialer.registration_status().state is RegistrationState.REGISTERING
            await dialer.start()  # no call placed: the registration begins here
            await registered(dialer)
            status = dialer.registration_status()
            assert status.state is RegistrationState.REGISTERED and status.last_error is None
            # Registered again each second (a refresh long before the 3600 s expiry).
            await until(lambda: len(pbx.find("REGISTER ")) >= 6)
            assert dialer.registration_status().since == status.since
        assert pbx.wait(10) == 0, pbx.log()  # the de-registration ended SIPp's one call
        registers = pbx.find("REGISTER ")
    call_ids, cseqs = _call_ids_and_cseqs(registers)
    # One Call-ID per boot, CSeq counting up (RFC 3261 10.2.4).
    assert len(call_ids) == 1
    assert cseqs == sorted(cseqs) and len(set(cseqs)) == len(cseqs)
    assert "Expires: 0" in registers[-1] or "expires=0" in registers[-1].lower()


async def test_a_refused_registration_fails_with_the_registrars_answer(tmp_path: Path) -> None:
    need_sipp()
    with SippUas("uas_register_forbidden.xml", tmp_path) as pbx:
        async with sip_dialer(pbx.port) as dialer:
            changes: list[RegistrationState] = []
            dialer.on_status_change(lambda: changes.append(dialer.registration_status().state))
            await dialer.start()
            await until(lambda: dialer.registration_status().state is RegistrationState.FAILED)
            status = dialer.registration_status()
            # Tried again after a second, with the same answer: still failed since the first.
            await until(lambda: len(pbx.find("SIP/2.0 403")) >= 2)
            assert dialer.registration_status().since == status.since
    assert changes == [RegistrationState.FAILED]  # once, not at each retry
    assert status.last_error is not None
    report = status.to_json()
    assert report["state"] == "failed"
    assert report["lastError"]["code"] == "refused"
    assert report["lastError"]["params"] == {"status": 403, "reason": "Forbidden"}
    assert "403 Forbidden" in report["lastError"]["detail"]


async def test_a_registrar_that_never_answers_times_out_and_is_found_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_sipp()
    monkeypatch.setattr(ua, "T1", 0.02)  # a transaction gives up after 1.28 s, not 32 s
    port = free_sip_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", port))  # takes REGISTERs and answers none
        async with sip_dialer(port) as dialer:
            await dialer.start()
            await until(lambda: dialer.registration_status().state is RegistrationState.FAILED)
            failed = dialer.registration_status()
            silent.close()
            # The PBX comes back on its address: the next attempt registers.
            with SippUas("uas_register.xml", tmp_path, port=port):
                await registered(dialer, 15)
                back = dialer.registration_status()
    assert failed.last_error is not None
    assert failed.last_error.code == "timeout"
    assert failed.last_error.params == {"seconds": 1}
    assert back.state is RegistrationState.REGISTERED and back.since > failed.since
    assert back.last_error == failed.last_error  # kept, for "last error" on the website


async def test_the_expiry_granted_on_our_contact_is_refreshed_before_it_ends(
    tmp_path: Path,
) -> None:
    # Kamailio's 200: no Expires header, our Contact with ;expires=20 among the user's
    # other bindings (which are granted far longer). RFC 3261 10.2.4: ours counts.
    need_sipp()
    with SippUas("uas_register_contact_expires.xml", tmp_path, keys={"expires": "20"}) as pbx:
        async with sip_dialer(pbx.port, check_s=60.0) as dialer:
            await dialer.start()
            await registered(dialer)
            loop = asyncio.get_running_loop()
            first = loop.time()
            await until(lambda: len(pbx.find("SIP/2.0 200")) >= 2, within=19)
            refreshed_after = loop.time() - first
            assert dialer.registration_status().state is RegistrationState.REGISTERED
    assert refreshed_after < 20 - 2, refreshed_after  # before the grant ends, with room
    assert refreshed_after >= MIN_REFRESH_S - 0.5


async def test_a_registration_granted_for_0_seconds_fails_and_backs_off(tmp_path: Path) -> None:
    need_sipp()
    with SippUas("uas_register.xml", tmp_path, keys={"expires": "0"}) as pbx:
        async with sip_dialer(pbx.port, check_s=60.0) as dialer:
            await dialer.start()
            await until_state(dialer, RegistrationState.FAILED)
            await asyncio.sleep(3.2)
            status = dialer.registration_status()
            granted = len(pbx.find("SIP/2.0 200"))
    assert status.state is RegistrationState.FAILED
    assert status.last_error is not None
    assert status.last_error.code == "notGranted"
    assert status.last_error.params == {"requested": 300}
    # Retried after 1 s, then 2 s: three in about 3 s, not one a second.
    assert 2 <= granted <= 3, granted


def _ok(headers: list[tuple[str, str]]) -> Callable[[Request], Answer]:
    return lambda _: (200, "OK", headers)


@pytest.mark.parametrize(
    ("headers", "granted"),
    [
        ([("Expires", "²")], 300),  # str.isdigit() says yes; int() says no
        ([("Expires", "9" * 4400)], 300),  # beyond int()'s 4,300 digits
        ([("Expires", "-5")], 300),
        ([("Expires", "99999999999")], 300),  # eleven digits: not delta-seconds
        ([("Expires", "9999999999")], 2**32 - 1),  # clamped (RFC 3261 20.19)
        ([("Expires", " 120 ")], 120),
    ],
)
async def test_a_malformed_expires_from_the_registrar_is_read_as_absent(
    headers: list[tuple[str, str]], granted: int
) -> None:
    async with scripted_registrar(_ok(headers)) as pbx, sip_dialer(pbx.port) as dialer:
        await dialer.start()
        await registered(dialer)
        assert dialer.ua is not None
        assert await dialer.ua.register_once() == granted


@pytest.mark.parametrize("minimum", ["²", "9" * 4400, "ten"])
async def test_a_malformed_min_expires_is_a_refusal_not_a_fault_of_ours(minimum: str) -> None:
    async with (
        scripted_registrar(
            lambda _: (423, "Interval Too Brief", [("Min-Expires", minimum)])
        ) as pbx,
        sip_dialer(pbx.port) as dialer,
    ):
        await dialer.start()
        await until_state(dialer, RegistrationState.FAILED)
        error = dialer.registration_status().last_error
    assert error is not None
    assert (error.code, dict(error.params)) == (
        "refused",
        {"status": 423, "reason": "Interval Too Brief"},
    )


async def test_a_423_is_answered_with_the_registrars_minimum() -> None:
    def script(request: Request) -> Answer:
        if request.headers.get("Expires") == "300":
            return 423, "Interval Too Brief", [("Min-Expires", "600")]
        return 200, "OK", [("Expires", request.headers.get("Expires") or "")]

    async with scripted_registrar(script) as pbx, sip_dialer(pbx.port) as dialer:
        await dialer.start()
        await registered(dialer)
    assert [r.headers.get("Expires") for r in pbx.received][:2] == ["300", "600"]


async def test_a_proxy_challenge_and_then_the_registrars_are_both_answered() -> None:
    # An outbound proxy asks for Proxy-Authorization, then the registrar behind it for
    # Authorization (RFC 3261 22.3): credentials for both, not "credentials refused".
    def script(request: Request) -> Answer:
        if "Proxy-Authorization" not in request.headers:
            challenge = 'Digest realm="proxy", nonce="p1", algorithm=MD5'
            return 407, "Proxy Authentication Required", [("Proxy-Authenticate", challenge)]
        if "Authorization" not in request.headers:
            challenge = 'Digest realm="pbx", nonce="r1", algorithm=MD5'
            return 401, "Unauthorized", [("WWW-Authenticate", challenge)]
        return 200, "OK", [("Expires", "300")]

    async with scripted_registrar(script) as pbx, sip_dialer(pbx.port) as dialer:
        await dialer.start()
        await registered(dialer)
    cseqs = [r.cseq[0] for r in pbx.received[:3]]
    assert cseqs == sorted(set(cseqs))  # each attempt a new CSeq
    last = pbx.received[2]
    assert 'realm="proxy"' in (last.headers.get("Proxy-Authorization") or "")
    assert 'realm="pbx"' in (last.headers.get("Authorization") or "")


async def test_a_second_challenge_of_the_same_kind_means_the_credentials_are_refused() -> None:
    challenge = 'Digest realm="pbx", nonce="n", algorithm=MD5'
    always = (401, "Unauthorized", [("WWW-Authenticate", challenge)])
    async with scripted_registrar(lambda _: always) as pbx, sip_dialer(pbx.port) as dialer:
        await dialer.start()
        await until_state(dialer, RegistrationState.FAILED)
        error = dialer.registration_status().last_error
    assert error is not None and error.code == "credentialsRefused"
    assert len([r for r in pbx.received if "Authorization" in r.headers]) >= 1


async def test_a_wildcard_local_address_is_a_setting_to_fix_not_a_fault_of_ours() -> None:
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9))
    dialer = SipDialer(account, local=("0.0.0.0", 0))
    try:
        with pytest.raises(DialerError, match="wildcard"):
            await dialer.start()
        error = dialer.registration_status().last_error
    finally:
        await dialer.close()
    assert error is not None
    assert (error.code, dict(error.params)) == ("localAddress", {"address": "0.0.0.0"})


async def test_a_pbx_name_that_never_resolves_fails_in_time_and_is_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    lookups: list[str] = []
    real = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "pbx.hangs.test":
            lookups.append(host)
            release.wait(30)  # a resolver that never answers (until the test ends)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    monkeypatch.setattr(sip_dialer_module, "RESOLVE_TIMEOUT_S", 0.3)
    account = Account("Rundruf", "secret", "pbx.hangs.test", ("pbx.hangs.test", 5060))
    dialer = SipDialer(account)
    try:
        loop = asyncio.get_running_loop()
        for _ in range(3):  # the service's heartbeat tries again and again
            began = loop.time()
            with pytest.raises(DialerError, match=r"no answer within 0\.3 s"):
                await dialer.start()
            assert loop.time() - began < 1.0
        error = dialer.registration_status().last_error
    finally:
        release.set()
        await dialer.close()
    assert lookups == ["pbx.hangs.test"]  # one thread waits, not one per attempt
    assert error is not None
    assert (error.code, dict(error.params)) == ("unresolvable", {"host": "pbx.hangs.test"})


async def test_a_pbx_name_that_does_not_resolve_fails_the_start_and_says_so() -> None:
    account = Account("Rundruf", "secret", "pbx.invalid", ("pbx.invalid", 5060))
    dialer = SipDialer(account)
    try:
        with pytest.raises(Exception, match="cannot be resolved"):
            await dialer.start()
        status = dialer.registration_status()
    finally:
        await dialer.close()
    assert status.state is RegistrationState.FAILED
    assert status.last_error is not None
    assert status.last_error.code == "unresolvable"
    assert status.last_error.params == {"host": "pbx.invalid"}


async def test_without_registration_the_status_says_disabled() -> None:
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account)
    try:
        await dialer.start()
        await asyncio.sleep(0.05)
        assert dialer.registration_status().state is RegistrationState.DISABLED
    finally:
        await dialer.close()


# --- pure parts ---------------------------------------------------------------------


def test_each_failure_has_its_code_and_parameters() -> None:
    cases = [
        (
            RegistrationRefused(401, "Unauthorized", challenged=True),
            "credentialsRefused",
            {"status": 401},
        ),
        (
            RegistrationRefused(407, "Proxy Auth", challenged=True),
            "credentialsRefused",
            {"status": 407},
        ),
        (
            RegistrationRefused(404, "Not Found", challenged=False),
            "refused",
            {"status": 404, "reason": "Not Found"},
        ),
        (SipTimeout("no final answer"), "timeout", {"seconds": 32}),
        (DigestError("unknown algorithm"), "challengeUnsupported", {}),
        (ConnectionRefusedError("refused"), "network", {}),
        (RegistrationNotGranted(300), "notGranted", {"requested": 300}),
        (ValueError("bug"), "internal", {}),
    ]
    for exc, code, params in cases:
        error = error_of(exc, AT)
        assert (error.code, dict(error.params)) == (code, params), exc
        assert error.at == AT


def test_a_fault_of_ours_is_reported_as_a_code_without_python_names() -> None:
    # The report reaches the customer's mail; the traceback stays in the agent's log.
    report = error_of(KeyError("sip_secret"), AT).to_json()
    assert report == {"code": "internal", "params": {}, "detail": "", "at": AT.isoformat()}


def test_details_and_reasons_are_bounded_single_printable_lines() -> None:
    error = error_of(RegistrationRefused(500, "x" * 500, challenged=False), AT)
    assert len(str(error.params["reason"])) == 60
    assert len(error.to_json()["detail"]) <= 200
    odd = error_of(RegistrationRefused(503, "Service\tUn\x01available", challenged=False), AT)
    assert odd.to_json()["params"]["reason"] == "Service Un available"
    assert "\t" not in odd.to_json()["detail"]


def test_the_next_register_comes_at_the_check_or_early_enough_to_notice_a_timeout() -> None:
    assert refresh_in(3600, 60) == 60
    # A REGISTER that times out (32 s) is noticed 2 s before a 120 s grant ends.
    assert refresh_in(120, 600) == 120 - 32 - 2
    # Shorter grants: every 5 s, never a REGISTER a second.
    assert refresh_in(20, 60) == MIN_REFRESH_S == 5
    assert refresh_in(1, 60) == 5


async def test_a_fault_of_ours_keeps_the_registration_trying() -> None:
    attempts = 0

    async def register() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise KeyError("bug")
        return 3600

    registration = Registration(register)
    task = asyncio.create_task(registration.run())
    try:
        async with asyncio.timeout(5):
            while registration.status.state is not RegistrationState.REGISTERED:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert registration.status.state is RegistrationState.REGISTERED
    assert registration.status.last_error is not None
    assert registration.status.last_error.code == "internal"


async def test_the_de_registration_waits_for_the_register_still_on_its_way() -> None:
    """RFC 3261 10.2: no new REGISTER before the last one has its final answer. Closing
    the dialer while a REGISTER waits for its answer used to send the de-registration at
    once (a SIPp registrar then aborted on the unexpected message)."""
    events: list[str] = []
    loop = asyncio.get_running_loop()

    class SlowRegistrar(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            request = parse(data)
            assert isinstance(request, Request)
            expires = request.headers.get("Expires")
            events.append(f"REGISTER expires={expires}")
            answer = bytes(response_to(request, 200, "OK", new_tag()))
            # The first REGISTER is answered late (before the retransmission at T1,
            # 500 ms): the dialer closes meanwhile.
            delay = 0.3 if len(events) == 1 else 0.0
            loop.call_later(delay, self._answer, answer, addr, expires)

        def _answer(self, answer: bytes, addr: tuple[str, int], expires: str | None) -> None:
            events.append(f"200 to expires={expires}")
            self.transport.sendto(answer, addr)  # type: ignore[attr-defined]

    transport, _ = await loop.create_datagram_endpoint(SlowRegistrar, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        async with sip_dialer(port) as dialer:
            await dialer.start()
            await until(lambda: len(events) == 1)
        await until(lambda: len(events) == 4, within=5)
    finally:
        transport.close()

    assert events == [
        "REGISTER expires=300",
        "200 to expires=300",
        "REGISTER expires=0",
        "200 to expires=0",
    ]
