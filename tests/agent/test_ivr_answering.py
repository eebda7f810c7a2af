"""From the trigger call to the broadcast (edge_agent/ivr/answering.py) on a real journal.

The broadcast bed of test_broadcast_executor (SwyxWare simulator, simulated dialer,
journal in tmp_path); the caller is a scripted line.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.manager import Trigger
from edge_agent.broadcast.model import Mode
from edge_agent.broadcast.reporter import Reporter, report_json
from edge_agent.ivr.answering import (
    NOT_CONFIGURED,
    UNKNOWN_NUMBER,
    IvrAnswering,
    Refusal,
    source_id,
)
from edge_agent.ivr.flow import Outcome
from edge_agent.ivr.prompts import PromptBook
from edge_agent.pbx.port import UserState
from edge_agent.server import Server
from edge_agent.settings import AgentSettings
from tests.agent.ivr_lines import ScriptedLine, speech
from tests.agent.test_broadcast_executor import AGENT_NUMBER, Bed, make_bed

PIN = "123456"  # make_bed's


class NamedPrompts(PromptBook):
    """Prompts as their language and name, so the scripted line can say what it heard."""

    def pcm(self, name: str, language: str) -> bytes:
        return f"prompt:{language}/{name}".encode()


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    made = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON, "Ben": UserState.LOGGED_ON})
    yield made
    await made.broadcasts.close()
    await made.dialer.close()


def answering(bed: Bed, tmp_path: Path) -> IvrAnswering:
    return IvrAnswering(tmp_path / "agent", bed.cache, bed.broadcasts, prompts=NamedPrompts())


async def call(ivr: IvrAnswering, line: ScriptedLine, number: str = AGENT_NUMBER) -> Outcome:
    handler = ivr.route(number)
    assert not isinstance(handler, Refusal), handler
    return await handler(line)


def trigger_id(line: ScriptedLine) -> str:
    return source_id(line.call_id, line.from_tag, AGENT_NUMBER)


async def finished(bed: Bed, line: ScriptedLine) -> str:
    b = await bed.broadcasts.journal.by_source(trigger_id(line))
    assert b is not None
    task = bed.broadcasts.running.get(b.id)
    if task is not None:
        await asyncio.wait_for(task, 30)
    return b.id


async def test_routes(bed: Bed, tmp_path: Path) -> None:
    ivr = answering(bed, tmp_path)
    assert not isinstance(ivr.route(AGENT_NUMBER), Refusal)
    assert ivr.route("4711") == UNKNOWN_NUMBER
    assert ivr.route("") == UNKNOWN_NUMBER
    # The SIP side's candidates (History-Info, Diversion, Request-URI, To): the first known.
    assert not isinstance(ivr.route(["", "4711", AGENT_NUMBER]), Refusal)
    assert ivr.route(["4711", "4712"]) == UNKNOWN_NUMBER
    assert ivr.route([]) == UNKNOWN_NUMBER
    group = bed.cache.broadcast_groups[bed.group_id]
    group["pin"] = "123"  # too short: never a PIN anyone could match
    assert ivr.route(AGENT_NUMBER) == UNKNOWN_NUMBER
    group.pop("pin")
    assert ivr.route(AGENT_NUMBER) == UNKNOWN_NUMBER
    bed.cache.broadcast_groups.clear()  # nothing cached yet: cannot tell, try later
    assert ivr.route(AGENT_NUMBER) == NOT_CONFIGURED
    assert (NOT_CONFIGURED.status, UNKNOWN_NUMBER.status) == (480, 404)


async def test_a_sip_trigger_journals_and_runs_with_the_callers_number(
    bed: Bed, tmp_path: Path
) -> None:
    ivr = answering(bed, tmp_path)
    line = ScriptedLine([PIN, "2", "1"], caller="+4930111", caller_name="Erika Muster")
    assert await call(ivr, line) is Outcome.TRIGGERED
    assert line.heard[-1] == "de/triggered"
    # Journaled before "triggered" was said: another reader of the file finds it.
    other = Journal(tmp_path / "agent" / "broadcasts.db")
    try:
        journaled = await other.by_source(trigger_id(line))
    finally:
        await other.close()
    assert journaled is not None
    assert journaled.source == "sip"
    assert journaled.mode == Mode.ALARM
    assert journaled.group_pbx_id == bed.group_id
    broadcast_id = await finished(bed, line)
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert b.status == "completed"
    members = {m.pbx_id: m for m in await bed.broadcasts.journal.members(b.id)}
    events = await bed.broadcasts.journal.events(b.id)
    report = report_json(b, members, events, final=True)
    assert report["triggerCallerNumber"] == "+4930111"
    assert report["triggerCallerName"] == "Erika Muster"
    assert report["triggerSource"] == "SIP"  # the history's "per Telefon (SIP)"
    assert {e["kind"] for e in report["events"]} >= {"started", "answered", "ended"}


async def test_the_same_call_never_triggers_twice(bed: Bed, tmp_path: Path) -> None:
    ivr = answering(bed, tmp_path)
    first = ScriptedLine([PIN, "2", "1"], call_id="same@pbx", from_tag="a1")
    assert await call(ivr, first) is Outcome.TRIGGERED
    broadcast_id = await finished(bed, first)
    # The INVITE again (a restart, a PBX repeating it; same Call-ID and From tag): still
    # the one broadcast, and this dialog started nothing, so it must not say "ausgelöst".
    again = ScriptedLine([PIN, "1", "1"], call_id="same@pbx", from_tag="a1")
    assert await call(answering(bed, tmp_path), again) is Outcome.TRIGGER_FAILED
    assert again.heard[-1] == "de/failed"
    assert "de/triggered" not in again.heard
    assert [b.id for b in await bed.broadcasts.journal.unsettled()] == [broadcast_id]


async def test_a_new_call_reusing_a_call_id_gets_its_own_broadcast(
    bed: Bed, tmp_path: Path
) -> None:
    # A PBX restarted (or SIPp's default ids): the same Call-ID, another From tag.
    ivr = answering(bed, tmp_path)
    first = ScriptedLine([PIN, "2", "1"], call_id="1-42@127.0.0.1", from_tag="a1")
    assert await call(ivr, first) is Outcome.TRIGGERED
    first_id = await finished(bed, first)
    second = ScriptedLine([PIN, "1", "1"], call_id="1-42@127.0.0.1", from_tag="b2")
    assert await call(ivr, second) is Outcome.TRIGGERED
    assert second.heard[-1] == "de/triggered"
    second_id = await finished(bed, second)
    assert second_id != first_id
    assert (await bed.broadcasts.journal.get(second_id)).mode == Mode.TEST


async def test_a_group_gone_during_the_call_is_not_triggered(bed: Bed, tmp_path: Path) -> None:
    # The server removes the group (a config push) while the caller confirms.
    class Gone(NamedPrompts):
        def pcm(self, name: str, language: str) -> bytes:
            if name == "confirm_alarm":
                bed.cache.broadcast_groups.clear()
            return super().pcm(name, language)

    ivr = IvrAnswering(tmp_path / "agent", bed.cache, bed.broadcasts, prompts=Gone())
    line = ScriptedLine([PIN, "2", "1"])
    assert await call(ivr, line) is Outcome.TRIGGER_FAILED
    assert line.heard[-1] == "de/failed"
    assert "de/triggered" not in line.heard
    b = await bed.broadcasts.journal.by_source(trigger_id(line))
    assert b is not None and b.status == "failed"  # journaled as failed, for the history


async def test_mode_3_sends_the_callers_recording(bed: Bed, tmp_path: Path) -> None:
    ivr = answering(bed, tmp_path)
    message = speech(1.2)
    line = ScriptedLine([PIN, "3", message, "1"])
    assert await call(ivr, line) is Outcome.TRIGGERED
    b = await bed.broadcasts.journal.get(await finished(bed, line))
    assert b.mode == Mode.ALARM_RECORDED
    assert "unusable" not in (b.note or "")  # the recording was used, not the stored one
    assert b.announcement is not None
    data = await asyncio.to_thread(Path(b.announcement).read_bytes)
    with wave.open(io.BytesIO(data), "rb") as w:
        played = w.readframes(w.getnframes())
    assert message in played  # the play file is the message, repeated
    # The IVR's own copy went once the broadcast had its own.
    assert list((tmp_path / "agent" / "ivr" / "recordings").glob("*.wav")) == []


async def test_the_tenants_language(bed: Bed, tmp_path: Path) -> None:
    ivr = answering(bed, tmp_path)
    bed.cache.data["settings"]["language"] = "en"
    line = ScriptedLine([PIN, "*"])
    assert await call(ivr, line) is Outcome.CANCELLED
    assert line.heard == ["en/pin", "en/menu", "en/cancelled"]
    bed.cache.data["settings"]["language"] = ["nonsense"]
    line = ScriptedLine([PIN, "*"], call_id="c2")
    await call(ivr, line)
    assert line.heard[0] == "de/pin"


async def test_close_hangs_up_calls_under_way(bed: Bed, tmp_path: Path) -> None:
    ivr = answering(bed, tmp_path)
    entered = asyncio.Event()

    class Waiting(ScriptedLine):
        async def read_digits(self, max_digits: int, wait_s: float, end: str | None) -> str:
            entered.set()
            await asyncio.Event().wait()
            return ""

    line = Waiting([])
    task = asyncio.create_task(call(ivr, line))
    await entered.wait()
    await ivr.close()
    assert task.cancelled()
    assert line.hung_up


def test_a_sip_trigger_never_waited() -> None:
    # The agent took the call itself: no outage between the caller's 1 and the start.
    raised = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = Trigger(source="sip", source_id="sip-x", mode=Mode.ALARM, raised_at=raised)
    assert trigger.outage(raised + timedelta(seconds=1)) is None


def test_the_agent_answers_calls_with_the_sip_dialer_unless_told_not_to(tmp_path: Path) -> None:
    def settings(**values: object) -> AgentSettings:
        return AgentSettings(pbx="sim", state_dir=tmp_path, **values)  # type: ignore[arg-type]

    assert settings(dialer="sip").answers_calls
    assert settings(dialer="sip", sip_answer_calls=True).answers_calls
    assert not settings(dialer="sip", sip_answer_calls=False).answers_calls
    assert not settings(dialer="sim").answers_calls
    assert not settings(dialer="sim", sip_answer_calls=True).answers_calls  # only SIP can


class History:
    """The central service's reportBroadcast: stores every event it gets."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    async def report_broadcast(self, report: dict[str, Any]) -> int:
        self.reports.append(report)
        return max((e["seq"] for e in report["events"]), default=0)


async def test_a_finished_sip_broadcast_settles_without_a_job_service(
    bed: Bed, tmp_path: Path
) -> None:
    ivr = answering(bed, tmp_path)
    line = ScriptedLine([PIN, "2", "1"])
    assert await call(ivr, line) is Outcome.TRIGGERED
    broadcast_id = await finished(bed, line)
    history = History()
    # No job service on this agent: nothing to delete, the broadcast is settled all the same.
    reporter = Reporter(bed.broadcasts.journal, cast(Server, history), None, 60)
    assert await reporter.settle() is False
    b = await bed.broadcasts.journal.get(broadcast_id)
    assert b.final_acked and b.source_done
    assert await bed.broadcasts.journal.unsettled() == []
    assert history.reports[-1]["status"] == "COMPLETED"
    assert history.reports[-1]["triggerSource"] == "SIP"
