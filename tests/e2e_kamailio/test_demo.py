"""`make demo PBX=kamailio ONCE=1` (issue 16 point 6): the demo's story through Kamailio,
the trigger call placed by SIPp through Kamailio to the agent, the members SIP phones
registered there; it exits 0 because every member with a phone confirmed. About a
minute, most of it the watchdog noticing the stopped agent, as in every demo run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.processes import RUNDRUF, clean_env, free_port
from tests.sip.bed import need_baresip, need_pcap_play
from tests.sip.kamailio import need_kamailio


def test_the_demo_runs_its_story_through_kamailio_with_a_sip_trigger_call(tmp_path: Path) -> None:
    need_kamailio()
    need_pcap_play()
    need_baresip()
    result = subprocess.run(
        [*RUNDRUF, "demo", "--once", "--port", str(free_port()), "--pbx", "kamailio"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Kamailio (the PBX): sip:127.0.0.1:" in out
    assert re.search(r"Trigger call over SIP: 100 \(Pforte\) → Kamailio → \d+", out)
    assert "Verlauf: ausgelöst per Telefon (SIP) von 100" in out
    # baresip answers for the first reachable member; SIPp for the other 14.
    assert re.search(r"Anna Müller \(\d+\): baresip", out)
    assert re.search(r"Anna Müller \(\d+\) +CONFIRMED +1 ", out)
    assert "15 of 20 members have a phone registered at Kamailio; 15 confirmed" in out
    # baresip's sndfile cuts its file names at 128 characters (pytest's paths are long).
    heard = list((tmp_path / ".rundruf" / "kamailio").glob("baresip-*/recordings/dump-*"))
    assert heard and max(f.stat().st_size for f in heard) > 8000 * 2, "the phone heard it"
