"""Issue 15, point 2 with the system's own resolver: a re-INVITE whose c= names a host
that the (test's own, loopback) DNS server never answers leaves the other calls' RTP
paced and SIP answered; the re-INVITE gets 100 at once and 488 after the 2 s timeout.

glibc reads its DNS server from /etc/resolv.conf, so the scenario
(tests/sip_unit/media_host_freeze.py) runs in a user, mount and network namespace of
its own (``unshare -rmn``) with a resolv.conf naming 127.0.0.1 there; nothing of the
machine's is changed. Linux only; skipped where namespaces are not allowed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.sip_unit.namespaces import needs_namespaces, scenario_result

SCENARIO = Path(__file__).with_name("media_host_freeze.py")
# Longer than the agent's 2 s: the lookup is still running when the agent gives up.
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n"


pytestmark = needs_namespaces


def test_other_calls_stay_paced_while_a_reinvite_waits_for_a_resolver_that_never_answers(
    tmp_path: Path,
) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(RESOLV_CONF)
    script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "{sys.executable}" "{SCENARIO}"'
    result = scenario_result(["unshare", "-rmn", "sh", "-c", script], timeout_s=120)
    # 20 ms pacing, with room for a busy machine: nowhere near a lookup's 5 s, which the
    # old code spent on the loop for every packet to that call.
    assert result["max_gap_s"] < 0.5, result
    assert result["min_packets"] >= 0.8 * result["watched_s"] / 0.020, result
    statuses = [status for _, status in result["reinvite"]]
    assert statuses == [100, 488], result
    trying_at, refused_at = (at for at, _ in result["reinvite"])
    assert trying_at < 0.5 and 1.9 < refused_at < 3.5, result  # our 2 s, not glibc's 5 s
    assert result["options"] and result["options"][0] < 0.5, result  # SIP still answered
    # One lookup for the offer (glibc asks for the name, as A and maybe AAAA, once).
    assert set(result["dns_names"]) == {"media.pbx.example"}, result
    assert len(result["dns_names"]) <= 2, result
