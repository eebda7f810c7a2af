"""`rundruf demo --pbx kamailio` (`make demo PBX=kamailio`): the demo's story through a real
SIP server.

Kamailio is the PBX (the test bed's configuration, tests/sip/kamailio/): the agent
registers there as "Rundruf" and answers the trigger call itself; the alarm group's
reachable members are SIP phones registered there (one baresip that records what it
hears, SIPp for the others, each pressing 1); the trigger call is SIPp dialling the
group's agent number from extension 100 through Kamailio and pressing the PIN, 2 and 1
as RFC 4733 events. Members the simulator calls logged off or away have no phone
registered: Kamailio answers 480 and the agent retries them until the timeout.

It uses the test bed's code (tests/sip/, tests/e2e_kamailio/): it runs from the source
tree only, with kamailio, SIPp and baresip installed (`bash ops/ensure-services.sh`) and
root or CAP_NET_RAW for SIPp's RTP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.demo_alarm import UNREACHABLE, follow, set_announcements, table
from api.demo_story import ALARM_GROUP, DemoError
from edge_agent.pbx.sim import SimControl
from edge_agent.pbx.sim_state import StateFile

if TYPE_CHECKING:
    from tests.e2e_kamailio.members import BaresipMember, SippMembers
    from tests.sip.kamailio import Kamailio

CALLER = "100"
AGENT_USER = "Rundruf"
SEED_MEMBERS = 20  # as the agent seeds the simulator (AgentSettings.sim_seed_members)
SPARE_NUMBERS = 10  # free numbers routed to "Rundruf": the agent numbers to come


ROOT = Path(__file__).resolve().parent.parent  # the source tree, with tests/


def missing_tools() -> str | None:
    """What the Kamailio demo lacks on this machine, in words; None when nothing. Puts
    the source tree on sys.path (the console script's path has only its own folder)."""
    if not (ROOT / "tests" / "sip" / "kamailio").is_dir():
        return "the source tree's tests/ (the Kamailio demo runs from a checkout)"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    absent = [tool for tool in ("kamailio", "sipp", "baresip") if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} (bash ops/ensure-services.sh)"
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        sipp = shutil.which("sipp") or ""
        try:
            raw = bool(os.getxattr(sipp, "security.capability"))
        except OSError:
            raw = False
        if not raw:
            return "root or CAP_NET_RAW on sipp (its RTP is played from pcaps)"
    return None


@dataclass
class KamailioBed:
    """Kamailio, the members' phones and what the trigger call needs."""

    folder: Path
    pbx: Kamailio
    reachable: dict[str, str]  # member name -> extension, a phone registered for each
    phones: list[BaresipMember | SippMembers] = field(default_factory=list)

    def agent_env(self) -> dict[str, str]:
        """The agent's SIP: registered at Kamailio as "Rundruf", answering calls."""
        return {**self.pbx.agent_env(), "RUNDRUF_AGENT_SIP_ANSWER_CALLS": "true"}

    def stop(self) -> None:
        for phone in reversed(self.phones):
            with contextlib.suppress(Exception):
                phone.__exit__(None, None, None)
        self.pbx.stop()


def _directory(sim_state: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The simulator as the agent will find it (seeded now if new): every user's
    extension, the reachable alarm group members (name -> extension) and the next free
    numbers (the agent numbers the simulator will hand out)."""
    control = SimControl(sim_state)
    if control.create(exist_ok=True):
        control.seed_demo(n_members=SEED_MEMBERS)
    state = StateFile(sim_state).read()
    extensions = {u.name: u.extension for u in state.users if u.extension}
    group = next((g for g in state.groups if g.name == ALARM_GROUP), None)
    if group is None:
        raise DemoError(f"the simulated PBX has no group {ALARM_GROUP!r}")
    members = [state.user(i) for i in group.member_ids]
    reachable = {u.name: u.extension for u in members if u.extension and u.state not in UNREACHABLE}
    # The group's agent number when it was converted before, and the next free ones.
    numbers = [u.extension for u in state.users if u.callrouting_only and u.extension]
    used = set(extensions.values())
    spare = (
        str(n) for n in range(state.first_extension, state.last_extension + 1) if str(n) not in used
    )
    for number in spare:
        if len(numbers) >= SPARE_NUMBERS:
            break
        numbers.append(number)
    return extensions, reachable, numbers


def start_bed(state_dir: Path, sim_state: Path, say: Callable[[str], None]) -> KamailioBed:
    """Kamailio with the simulator's users, the phones of the reachable members."""
    missing = missing_tools()
    if missing:
        raise DemoError(f"--pbx kamailio needs {missing}")
    import secrets

    from tests.e2e_kamailio.members import BaresipMember, SippMembers
    from tests.sip.kamailio import Kamailio

    extensions, reachable, numbers = _directory(sim_state)
    users = {ext: secrets.token_urlsafe(9) for ext in [*extensions.values(), CALLER, AGENT_USER]}
    folder = (state_dir / "kamailio").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pbx = Kamailio(folder, users=users, agent_numbers=dict.fromkeys(numbers, AGENT_USER)).start()
    bed = KamailioBed(folder, pbx, reachable)
    try:
        ordered = sorted(reachable.items(), key=lambda item: item[1])
        name, extension = ordered[0]
        # baresip: the first reachable member's phone; it records what it hears.
        phone = BaresipMember(folder, pbx, extension, confirm_after=3.0)
        bed.phones.append(phone.__enter__())
        others = [ext for _, ext in ordered[1:]]
        sipp = SippMembers(folder, pbx, others, calls=10 * len(others), timeout=600)
        bed.phones.append(sipp.__enter__())
    except BaseException:
        bed.stop()
        raise
    say(f"  Kamailio (the PBX): {pbx.uri}, log {pbx.log_file}")
    say(f"    {name} ({extension}): baresip, records what it hears ({phone.dir / 'recordings'})")
    say(f"    {len(others)} more members: SIPp, registered at Kamailio, pressing 1 (SIP INFO)")
    return bed


def run_alarm(
    bed: KamailioBed, url: str, customer: Any, group: dict[str, Any], say: Callable[[str], None]
) -> bool:
    """Announcements, the SIP trigger call, the live history, the table; True when every
    member with a registered phone confirmed."""
    from tests.e2e_kamailio.timelines import alarm
    from tests.sip.trigger_caller import TriggerCaller

    set_announcements(url, customer, group["id"], say)
    agent = group["broadcast"]
    say(
        f"\n  Trigger call over SIP: {CALLER} (Pforte) → Kamailio → {agent['extension']} "
        f"(the agent, registered as {AGENT_USER!r}), PIN {agent['pin']}, Taste 2, Taste 1 "
        "(RFC 4733)"
    )
    started = datetime.now(UTC)
    caller = TriggerCaller(alarm(agent["pin"], "2"), caller=CALLER, caller_name="Pforte")
    auth = (CALLER, bed.pbx.password(CALLER))
    with caller.dial(bed.folder, bed.pbx.address, agent["extension"], auth=auth) as sipp:
        code = sipp.wait(120)
    if code != 0:
        raise DemoError(f"the trigger call failed (SIPp exit {code}; its files: {sipp.dir})")
    say("  the agent answered, took PIN, mode and confirmation, and calls (Verlauf, live):")
    broadcast = follow(customer, started, say)
    source = customer(
        "query($id: ID!) { broadcast(id: $id) { triggerSource triggerCallerNumber } }",
        id=broadcast["id"],
    )["broadcast"]
    how = {"SIP": "per Telefon (SIP)", "PHONE": "per Telefon"}.get(source["triggerSource"], "?")
    say(f"  Verlauf: ausgelöst {how} von {source['triggerCallerNumber']}")
    outcomes = table(broadcast, say)
    members = [m["name"] for m in group["members"]]
    missed = sorted(n for n in bed.reachable if outcomes.get(n) != "CONFIRMED")
    say(
        f"\n  {len(bed.reachable)} of {len(members)} members have a phone registered at "
        f"Kamailio; {len(bed.reachable) - len(missed)} confirmed"
    )
    if missed:
        say(f"  NOT reached: {', '.join(missed)}")
    return not missed
