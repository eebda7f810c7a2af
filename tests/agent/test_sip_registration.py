"""The SIP dialer's registration at the PBX: at start, refreshed at each check, and what
the health report says when the registrar refuses or does not answer. The registrar is
SIPp on loopback (tests/sip/scenarios/uas_register*.xml)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.dialer.sip import SipDialer
from edge_agent.sip import ua
from edge_agent.sip.errors import DigestError
from edge_agent.sip.registration import (
    Registration,
    RegistrationState,
    error_of,
    refresh_in,
)
from edge_agent.sip.ua import Account, RegistrationRefused, SipTimeout
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
            await asyncio.wait_for(dialer.registration.registered.wait(), 10)
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
                await asyncio.wait_for(dialer.registration.registered.wait(), 15)
                back = dialer.registration_status()
    assert failed.last_error is not None
    assert failed.last_error.code == "timeout"
    assert failed.last_error.params == {"seconds": 1}
    assert back.state is RegistrationState.REGISTERED and back.since > failed.since
    assert back.last_error == failed.last_error  # kept, for "last error" on the website


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
        (ValueError("bug"), "internal", {}),
    ]
    for exc, code, params in cases:
        error = error_of(exc, AT)
        assert (error.code, dict(error.params)) == (code, params), exc
        assert error.at == AT


def test_details_and_reasons_are_bounded_single_printable_lines() -> None:
    error = error_of(RegistrationRefused(500, "x" * 500, challenged=False), AT)
    assert len(str(error.params["reason"])) == 60
    assert len(error.to_json()["detail"]) <= 200
    odd = error_of(RegistrationRefused(503, "Service\tUn\x01available", challenged=False), AT)
    assert odd.to_json()["params"]["reason"] == "Service Un available"
    assert "\t" not in odd.to_json()["detail"]


def test_the_next_register_comes_at_the_check_or_before_the_expiry() -> None:
    assert refresh_in(3600, 60) == 60
    assert refresh_in(30, 60) == 24  # 80 % of a short expiry
    assert refresh_in(0, 60) == 1  # never a busy loop


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
        await asyncio.wait_for(registration.registered.wait(), 5)
    finally:
        task.cancel()
    assert registration.status.state is RegistrationState.REGISTERED
    assert registration.status.last_error is not None
    assert registration.status.last_error.code == "internal"
