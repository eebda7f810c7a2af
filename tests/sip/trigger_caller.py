"""The trigger caller: SIPp dialling a group's agent number through the PBX (Kamailio),
pressing the PIN, the mode and the confirmation as RFC 4733 events or as SIP INFO, and,
for mode 3, speaking a message into the line.

    caller = TriggerCaller([Wait(1.5), Keys("4711#"), Wait(1), Keys("2"), Wait(1), Keys("1")])
    with caller.dial(tmp_path, pbx=("127.0.0.1", 5060), number="299") as sipp:
        assert sipp.wait(60) == 0, sipp.log()

The scenario is scenarios/caller_trigger.xml with the caller's steps written in at its
CALLER STEPS mark: the RTP of the whole timeline is one pcap (caller_rtp.py) played from
the moment the call is answered, and in the INFO variant each key is an INFO request at
its time in that timeline. The timeline is a guess at the agent's prompts: a key pressed
during a prompt that allows barge-in stops it, so keys may come early but not before
the IVR asks for them (it forgets earlier keys when it asks something new).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.sip.bed import OK_TO_LAST, SCENARIOS, SippUac
from tests.sip.caller_rtp import Step, build, caller_pcap, duration

Dtmf = Literal["rfc4733", "info"]
MARK = "<!-- CALLER STEPS -->"
PCAP = "caller.pcap"

_PLAY = f"""  <nop>
    <action>
      <exec play_pcap_audio="{PCAP}"/>
    </action>
  </nop>
"""

_INFO = """  <pause milliseconds="{pause}"/>

  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "[caller_name]" <sip:[caller]@[domain]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration={press_ms}

    ]]>
  </send>

  <recv response="200"/>
"""

_THEIR_BYE = (
    """  <recv request="BYE"/>

"""
    + OK_TO_LAST
)

_OUR_BYE = """  <pause milliseconds="{pause}"/>

  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "[caller_name]" <sip:[caller]@[domain]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

  <recv response="200"/>
"""


@dataclass
class TriggerCaller:
    """A trigger call: the caller's steps (Wait, Keys, Speak), how its keys go (`dtmf`),
    who calls (`caller` is the From user), and whether the caller hangs up itself after
    the timeline (`hang_up`) or waits for the agent's BYE."""

    steps: Sequence[Step]
    dtmf: Dtmf = "rfc4733"
    caller: str = "100"
    caller_name: str = "Pforte"
    hang_up: bool = False
    press_ms: int = 160
    keys: list[tuple[float, str]] = field(default_factory=list)  # (time, key), once written

    def write(self, directory: Path) -> tuple[Path, dict[str, Path]]:
        """The scenario and its pcap in `directory`; SippUac takes both."""
        directory.mkdir(parents=True, exist_ok=True)
        pcap = directory / PCAP
        self.keys = caller_pcap(pcap, self.steps, events=self.dtmf == "rfc4733")
        parts = [_PLAY]
        cseq, at = 10, 0.0
        if self.dtmf == "info":
            for time, key in self.keys:
                pause = max(0, round((time - at) * 1000))
                parts.append(_INFO.format(pause=pause, cseq=cseq, key=key, press_ms=self.press_ms))
                cseq, at = cseq + 1, time
        if self.hang_up:
            # The pcap's tail has left SIPp before the BYE ends its playback.
            pause = max(0, round((duration(self.steps) + 0.3 - at) * 1000))
            parts.append(_OUR_BYE.format(pause=pause, cseq=cseq))
        else:
            parts.append(_THEIR_BYE)
        template = (SCENARIOS / "caller_trigger.xml").read_text()
        scenario = directory / f"caller_trigger_{self.dtmf}.xml"
        scenario.write_text(template.replace(MARK, "\n".join(parts)))
        return scenario, {PCAP: pcap}

    def dial(
        self,
        tmp_path: Path,
        pbx: tuple[str, int],
        number: str,
        *,
        domain: str | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 90,
    ) -> SippUac:
        """SIPp placing this call to `number` at the PBX (not started: use `with`).
        `domain` goes in the Request-URI, From and To (default: the PBX's address);
        `auth` answers a digest challenge."""
        host, port = pbx
        scenario, media = self.write(tmp_path / f"caller-{self.caller}-{self.dtmf}")
        keys = {
            "domain": domain or host,
            "caller": self.caller,
            "caller_name": self.caller_name,
        }
        return SippUac(
            f"sip:{number}@{host}:{port}",
            tmp_path,
            scenario=str(scenario),
            keys=keys,
            media=media,
            auth=auth,
            timeout=timeout,
        )

    def seconds(self) -> float:
        return duration(self.steps)

    def packets(self) -> int:
        return len(build(self.steps, events=self.dtmf == "rfc4733")[0])
