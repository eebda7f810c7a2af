"""The demo's alarm: announcements, a trigger call with the PIN, the live history, the table.

Like the rest of the story it goes through the public API only; the trigger
call is placed on the SwyxWare simulator, whose call routing posts the job to
the real job service, where the real agent picks it up.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from api.demo_story import Api, DemoError, finish, wait
from edge_agent.broadcast import audio
from edge_agent.pbx.port import UserState
from edge_agent.pbx.sim_state import StateFile
from edge_agent.pbx.sim_trigger import place_trigger_call

ALARM_TEXT = (
    "Achtung, Feueralarm im Gebäude. Bitte verlassen Sie sofort das Gebäude "
    "über die gekennzeichneten Fluchtwege und gehen Sie zum Sammelplatz."
)
TEST_TEXT = "Dies ist ein Test des Rundrufs. Es besteht keine Gefahr."
# Reached in an alarm: alarms break into calls and do-not-disturb; these states cannot answer.
UNREACHABLE = {UserState.UNAVAILABLE, UserState.LOGGED_OFF, UserState.AWAY}
BROADCAST = """query($id: ID!) { broadcast(id: $id) { id status note memberCount finishedAt
  quorum quorumReachedAt
  attempts { memberName memberExtension attemptNo startedAt ringingAt answeredAt confirmedAt
             endedAt outcome detail } } }"""
LATEST = """query($from: DateTime!) { broadcasts(first: 1, filter: {startedFrom: $from}) {
  nodes { id } } }"""
STEPS = (
    ("startedAt", "wird angerufen"),
    ("ringingAt", "klingelt"),
    ("answeredAt", "angenommen"),
    ("confirmedAt", "bestätigt (Taste 1)"),
)


def _announcement_wav(text: str, fallback: Path) -> tuple[bytes, str]:
    """Text-to-speech with espeak-ng where it is installed, else the bundled recording."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return fallback.read_bytes(), f"bundled {fallback.name}"
    from swyx_jobservice.callrouting.make_prompts import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ansage.wav"
        synthesize(espeak, "de", text, out)
        return out.read_bytes(), "espeak-ng"


def set_announcements(url: str, api: Api, group_id: str, say: Callable[[str], None]) -> None:
    for kind, text, fallback in (
        ("ALARM", ALARM_TEXT, audio.DEFAULTS["alarm"]),
        ("TEST", TEST_TEXT, audio.DEFAULTS["test"]),
    ):
        data, source = _announcement_wav(text, fallback)
        response = httpx.post(
            url + "/api/uploads",
            content=data,
            headers={"Authorization": f"Bearer {api.token}", "Content-Type": "audio/wav"},
            timeout=30,
        )
        if response.status_code != 201:
            raise DemoError(f"upload refused: {response.text}")
        change = api(
            "mutation($g: ID!, $k: AnnouncementKind!, $u: ID!) { setAnnouncement(groupId: $g, "
            "kind: $k, uploadId: $u) { command { id } } }",
            g=group_id,
            k=kind,
            u=response.json()["id"],
        )["setAnnouncement"]
        if change["command"] is not None:
            finish(api, change["command"]["id"])
        say(f"  Ansagen: {kind.lower()} ({source}, {len(data) // 1024} KB) on the agent")


def trigger_call(
    sim_state: Path, jobservice: tuple[str, str], extension: str, pin: str, time_scale: float
) -> str:
    """Calls the agent number, enters the PIN, presses 2 (alarm) and 1 (confirm)."""
    url, routing_token = jobservice
    result = asyncio.run(
        place_trigger_call(
            sim_state,
            url,
            routing_token,
            extension,
            [pin, "2", "1"],
            caller_number="100",
            caller_name="Pforte",
            time_scale=time_scale,
        )
    )
    if result.job_id is None:
        raise DemoError(f"the trigger call did not post a job: {result.outcome}")
    return result.job_id


def reachable_names(sim_state: Path, member_names: list[str]) -> set[str]:
    users = {u.name: u for u in StateFile(sim_state).read().users}
    return {n for n in member_names if n in users and users[n].state not in UNREACHABLE}


def follow(api: Api, started: datetime, say: Callable[[str], None]) -> dict[str, Any]:
    """Prints each call's steps as the history shows them; returns the finished broadcast."""
    latest = wait(
        lambda: api(LATEST, **{"from": started.isoformat()})["broadcasts"]["nodes"],
        30,
        "the broadcast to appear in the history",
    )
    broadcast_id = latest[0]["id"]
    seen: set[tuple[str, int, str]] = set()
    deadline = time.monotonic() + 600
    while True:
        broadcast: dict[str, Any] = api(BROADCAST, id=broadcast_id)["broadcast"]
        fresh: list[tuple[str, str]] = []
        for attempt in broadcast["attempts"]:
            who = f"{attempt['memberName']} ({attempt['memberExtension']})"
            for field, text in (*STEPS, ("endedAt", f"beendet: {attempt['outcome']}")):
                key = (attempt["memberName"], attempt["attemptNo"], field)
                if attempt[field] and key not in seen:
                    seen.add(key)
                    line = f"{who:<26} Versuch {attempt['attemptNo']}: {text}"
                    fresh.append((attempt[field], line))
        for at, line in sorted(fresh):  # in the order it happened
            say(f"    {datetime.fromisoformat(at).astimezone():%H:%M:%S.%f}"[:-3] + f"  {line}")
        if broadcast["finishedAt"]:
            return broadcast
        if time.monotonic() > deadline:
            raise DemoError("the broadcast did not finish within 10 minutes")
        time.sleep(0.25)


def table(broadcast: dict[str, Any], say: Callable[[str], None]) -> dict[str, str]:
    """The final table: one line per member, the last attempt's outcome; returns the outcomes."""
    last: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for a in broadcast["attempts"]:
        counts[a["memberName"]] = counts.get(a["memberName"], 0) + 1
        if a["memberName"] not in last or a["attemptNo"] > last[a["memberName"]]["attemptNo"]:
            last[a["memberName"]] = a
    say(
        f"\n  {'Teilnehmer':<26} {'Ergebnis':<13} {'Versuche':>8}  {'klingelt':<9} {'bestätigt':<9}"
    )
    for name in sorted(last):
        a = last[name]
        say(
            f"  {name + ' (' + str(a['memberExtension']) + ')':<26} {a['outcome'] or '-':<13} "
            f"{counts[name]:>8}  {_clock(a['ringingAt']):<9} {_clock(a['confirmedAt']):<9}"
        )
    say(f"  {broadcast['note']}")
    return {name: a["outcome"] for name, a in last.items()}


def _clock(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%H:%M:%S")


def run_alarm(
    url: str,
    customer: Api,
    group: dict[str, Any],
    sim_state: Path,
    jobservice: tuple[str, str],
    time_scale: float,
    say: Callable[[str], None],
    sip: bool = False,
) -> bool:
    """The alarm story; True when every reachable member confirmed."""
    set_announcements(url, customer, group["id"], say)
    members = [m["name"] for m in group["members"]]
    # Over SIP, SIPp answers for everyone: the simulator's user states do not apply.
    reachable = set(members) if sip else reachable_names(sim_state, members)
    agent = group["broadcast"]
    say(
        f"\n  Trigger call: 100 (Pforte) → {agent['extension']}, PIN {agent['pin']}, "
        "Taste 2 (Alarm), Taste 1 (auslösen)"
    )
    started = datetime.now(UTC)
    trigger_call(sim_state, jobservice, agent["extension"], agent["pin"], time_scale)
    say("  job accepted by the job service; the agent calls (Verlauf, live):")
    broadcast = follow(customer, started, say)
    outcomes = table(broadcast, say)
    missed = sorted(n for n in reachable if outcomes.get(n) != "CONFIRMED")
    say(
        f"\n  {len(reachable)} of {len(members)} members reachable"
        f"{'' if sip else ' (the others are logged off or away)'}; "
        f"{len(reachable) - len(missed)} confirmed"
    )
    if missed:
        say(f"  NOT reached: {', '.join(missed)}")
    return not missed
