"""Test mode on a SIP PBX: whether members are on the phone, from the PBX's dialog event
package (RFC 4235), asked once per member (RFC 6665 4.4.3). SIPp plays the PBX; the
broadcast tests run the executor on a real journal with the simulated dialer's calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from edge_agent.broadcast.model import Mode
from edge_agent.dialer.sim import SimDialer
from edge_agent.dialer.sip import SipDialer
from edge_agent.pbx.errors import PbxUnreachable
from edge_agent.pbx.port import Directory, UserState
from edge_agent.pbx.sim import DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, DEFAULT_HOST, SimPbx
from edge_agent.sip.subscription import dialog_states, fetch_dialog_state
from edge_agent.sip.ua import Account
from tests.agent.test_broadcast_executor import (
    SCALE,
    Bed,
    alarm,
    beds,
    final_outcomes,
    make_bed,
)
from tests.agent.test_broadcast_executor import run_to_end as run_broadcast
from tests.sip.bed import SippUas, free_udp_port, need_sipp

__all__ = ["beds"]  # the fixture, shared with test_broadcast_executor


@contextlib.asynccontextmanager
async def dialer_at(pbx: SippUas) -> AsyncIterator[SipDialer]:
    """The SIP dialer with SIPp as its PBX (outbound proxy), not registering."""
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", pbx.port), register=False)
    dialer = SipDialer(account)
    try:
        yield dialer
    finally:
        await dialer.close()


@pytest.mark.parametrize(
    ("state", "expected"), [("confirmed", True), ("early", True), ("terminated", False)]
)
async def test_a_member_on_the_phone_is_busy_and_an_idle_one_is_not(
    tmp_path: Path, state: str, expected: bool
) -> None:
    need_sipp()
    with SippUas("pbx_dialog_state.xml", tmp_path, keys={"state": state}) as pbx:
        async with dialer_at(pbx) as dialer:
            found = await dialer.busy_members({"anna": "201"})
            assert dialer.ua is not None and dialer.ua.dialogs == {}
        assert pbx.wait(10) == 0, pbx.log()
        assert pbx.flow() == ["< SUBSCRIBE", "> 200", "> NOTIFY", "< 200"]
        subscribe = pbx.find("SUBSCRIBE ")[0]
    assert found == {"anna": expected}
    assert subscribe.startswith("SUBSCRIBE sip:201@127.0.0.1 SIP/2.0\r\n")
    for header in ("Event: dialog", "Accept: application/dialog-info+xml", "Expires: 0"):
        assert f"\r\n{header}\r\n" in subscribe


async def test_a_pbx_without_the_dialog_package_cannot_tell(tmp_path: Path) -> None:
    need_sipp()
    with SippUas("pbx_dialog_bad_event.xml", tmp_path) as pbx:
        async with dialer_at(pbx) as dialer:
            found = await dialer.busy_members({"anna": "201"})
            assert dialer.ua is not None and dialer.ua.dialogs == {}
        assert pbx.wait(10) == 0, pbx.log()
    assert found == {"anna": None}
    assert pbx.flow() == ["< SUBSCRIBE", "> 489"]


async def test_no_notify_within_the_timeout_cannot_tell(tmp_path: Path) -> None:
    need_sipp()
    with SippUas("pbx_dialog_no_notify.xml", tmp_path) as pbx:
        async with dialer_at(pbx) as dialer:
            await dialer.start()
            assert dialer.ua is not None
            began = time.monotonic()
            found = await fetch_dialog_state(
                dialer.ua, "sip:201@127.0.0.1", ("127.0.0.1", pbx.port), timeout=1.0
            )
            waited = time.monotonic() - began
            assert dialer.ua.dialogs == {}
        assert pbx.wait(10) == 0, pbx.log()
    assert found is None
    assert 1.0 <= waited < 1.5
    assert pbx.flow() == ["< SUBSCRIBE", "> 200"]


async def test_a_pbx_that_does_not_answer_cannot_tell(tmp_path: Path) -> None:
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account)
    try:
        await dialer.start()
        assert dialer.ua is not None
        silent = ("127.0.0.1", free_udp_port())
        began = time.monotonic()
        found = await fetch_dialog_state(dialer.ua, "sip:201@127.0.0.1", silent, timeout=0.5)
        assert time.monotonic() - began < 1.0
        assert dialer.ua.dialogs == {}
    finally:
        await dialer.close()
    assert found is None


async def test_a_closed_dialer_cannot_tell() -> None:
    account = Account("Rundruf", "secret", "127.0.0.1", ("127.0.0.1", 9), register=False)
    dialer = SipDialer(account)
    await dialer.close()
    assert await dialer.busy_members({"anna": "201", "bernd": "202"}) == {
        "anna": None,
        "bernd": None,
    }
    assert dialer.ua is None  # not started again


async def test_a_challenged_subscribe_is_sent_again_with_credentials(tmp_path: Path) -> None:
    need_sipp()
    with SippUas("pbx_dialog_auth.xml", tmp_path, keys={"state": "confirmed"}) as pbx:
        async with dialer_at(pbx) as dialer:
            found = await dialer.busy_members({"anna": "201"})
        assert pbx.wait(10) == 0, pbx.log()
        subscribes = pbx.find("SUBSCRIBE ")
    assert found == {"anna": True}
    assert len(subscribes) == 2 and "Authorization: Digest" in subscribes[1]
    assert "CSeq: 2 SUBSCRIBE" in subscribes[1]


async def test_a_whole_group_is_asked_at_most_twenty_at_once(tmp_path: Path) -> None:
    need_sipp()
    extensions = {f"member-{i}": str(200 + i) for i in range(30)}
    with SippUas("pbx_dialog_state.xml", tmp_path, calls=30, keys={"state": "terminated"}) as pbx:
        async with dialer_at(pbx) as dialer:
            found = await dialer.busy_members(extensions)
        assert pbx.wait(10) == 0, pbx.log()
        asked = sorted(s.split()[1] for s in pbx.find("SUBSCRIBE "))
    assert found == dict.fromkeys(extensions, False)
    assert asked == sorted(f"sip:{e}@127.0.0.1" for e in extensions.values())


async def test_dialog_states_keeps_any_keys_and_needs_a_positive_concurrency(
    tmp_path: Path,
) -> None:
    need_sipp()
    with SippUas("pbx_dialog_state.xml", tmp_path, calls=2, keys={"state": "early"}) as pbx:
        async with dialer_at(pbx) as dialer:
            await dialer.start()
            assert dialer.ua is not None
            uris = {1: "sip:201@127.0.0.1", ("b", 2): "sip:202@127.0.0.1"}
            found = await dialog_states(dialer.ua, uris, ("127.0.0.1", pbx.port), concurrency=1)
            with pytest.raises(ValueError, match="concurrency must be at least 1"):
                await dialog_states(dialer.ua, uris, None, concurrency=0)
        assert pbx.wait(10) == 0, pbx.log()
    assert found == {1: True, ("b", 2): True}


# ------------------------------------------------------------------- test broadcasts


class _PbxWithoutStates(SimPbx):
    """A PBX port whose directory cannot be read (a SIP PBX without SwyxWare's interface)."""

    async def directory(self) -> Directory:
        raise PbxUnreachable("the PBX's configuration interface does not answer")


class _DialerWithDialogStates(SimDialer):
    """The simulated dialer's calls, with dialog states as a SIP dialer would give them:
    from `states` (by extension), or from a real SipDialer at a SIPp PBX; `asked` keeps
    what it was asked, `error` is raised instead when set."""

    def __init__(self, state_path: Path, sip: SipDialer | None = None) -> None:
        super().__init__(state_path, time_scale=SCALE)
        self.states: dict[str, bool | None] = {}
        self.sip = sip
        self.asked: list[dict[str, str]] = []
        self.error: Exception | None = None

    async def busy_members(self, extensions: Mapping[str, str]) -> dict[str, bool | None]:
        self.asked.append(dict(extensions))
        if self.error is not None:
            raise self.error
        if self.sip is not None:
            return await self.sip.busy_members(extensions)
        return {key: self.states.get(extension) for key, extension in extensions.items()}


async def _bed(
    tmp_path: Path, beds: list[Bed], names: list[str], sip: SipDialer | None = None
) -> tuple[Bed, _DialerWithDialogStates]:
    """The executor's bed (everyone logged on in the simulator) on a PBX port that cannot
    tell states, with a dialer that can."""
    bed = await make_bed(tmp_path, dict.fromkeys(names, UserState.LOGGED_ON))
    beds.append(bed)
    await bed.dialer.close()
    bed.dialer = dialer = _DialerWithDialogStates(bed.control.state_path, sip=sip)
    bed.broadcasts.dialer = dialer
    bed.broadcasts.pbx = _PbxWithoutStates(bed.control.state_path)
    return bed, dialer


async def test_a_test_broadcast_skips_a_member_the_dialog_state_shows_busy(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed, dialer = await _bed(tmp_path, beds, ["Anna", "Bernd", "Carla"])
    anna, bernd, carla = (bed.members[n] for n in ("Anna", "Bernd", "Carla"))
    dialer.states = {anna: True, bernd: False, carla: None}
    _, events = await run_broadcast(bed, alarm(mode=Mode.TEST))
    ids = {u["name"]: u["id"] for u in bed.cache.data["directory"]["users"]}
    outcomes = final_outcomes(events)
    assert outcomes == {
        ids["Anna"]: "skipped_busy",
        ids["Bernd"]: "confirmed",
        ids["Carla"]: "confirmed",
    }
    skipped = next(e for e in events if e.outcome == "skipped_busy")
    assert skipped.detail == "busy (busy)"
    assert not any(e.kind == "started" and e.pbx_id == ids["Anna"] for e in events)
    # The group's members were asked about, the broadcast agent user was not.
    assert dialer.asked == [{ids[n]: bed.members[n] for n in ("Anna", "Bernd", "Carla")}]


async def test_a_dialer_that_fails_to_tell_leaves_everyone_called(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed, dialer = await _bed(tmp_path, beds, ["Anna", "Bernd"])
    dialer.error = OSError("address already in use")
    _, events = await run_broadcast(bed, alarm(mode=Mode.TEST))
    assert sorted(final_outcomes(events).values()) == ["confirmed", "confirmed"]
    assert len(dialer.asked) == 1


async def test_states_from_the_pbx_port_are_used_without_asking_the_dialer(
    tmp_path: Path, beds: list[Bed]
) -> None:
    bed, dialer = await _bed(tmp_path, beds, ["Anna"])
    bed.broadcasts.pbx = SimPbx(bed.control.state_path)
    await bed.broadcasts.pbx.login(DEFAULT_HOST, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD)
    _, events = await run_broadcast(bed, alarm(mode=Mode.TEST))
    assert set(final_outcomes(events).values()) == {"confirmed"}
    assert dialer.asked == []


async def test_an_alarm_does_not_ask_for_states(tmp_path: Path, beds: list[Bed]) -> None:
    bed, dialer = await _bed(tmp_path, beds, ["Anna"])
    _, events = await run_broadcast(bed, alarm())
    assert set(final_outcomes(events).values()) == {"confirmed"}
    assert dialer.asked == []


@pytest.mark.parametrize(
    ("state", "outcome"), [("confirmed", "skipped_busy"), ("terminated", "confirmed")]
)
async def test_a_test_broadcast_asks_a_sip_pbx_for_the_dialog_state(
    tmp_path: Path, beds: list[Bed], state: str, outcome: str
) -> None:
    need_sipp()
    with SippUas("pbx_dialog_state.xml", tmp_path, keys={"state": state}) as pbx:
        async with dialer_at(pbx) as sip:
            bed, dialer = await _bed(tmp_path, beds, ["Anna"], sip)
            _, events = await asyncio.wait_for(run_broadcast(bed, alarm(mode=Mode.TEST)), 30)
        assert pbx.wait(10) == 0, pbx.log()
        subscribe = pbx.find("SUBSCRIBE ")[0]
    assert list(final_outcomes(events).values()) == [outcome]
    assert len(dialer.asked) == 1
    assert subscribe.startswith(f"SUBSCRIBE sip:{bed.members['Anna']}@127.0.0.1 SIP/2.0")
