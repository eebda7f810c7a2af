"""Headers that ask a PBX or phone to auto-answer or break into a running call (alarms).

No header is honoured everywhere, so a profile per PBX family sends the ones
it is known to act on; a phone or PBX ignores headers it does not know.

- `generic`: all of the headers below; an unknown PBX: each family finds its own.
- `swyx`: `Alert-Info`, `Call-Info`; SwyxWare passes both on to SIP phones
  (not verified on a real server).
- `asterisk`: `Alert-Info`, `Call-Info`, `Answer-Mode`; Asterisk and FreePBX pass
  them through to Polycom, Yealink and Snom phones.
- `rfc5373`: `Answer-Mode`, `Priv-Answer-Mode` (intrusion), for PBXs and phones
  that implement RFC 5373.
- `none`: no header, for PBXs that refuse calls with unknown headers.

`Priority: emergency` (RFC 3261 20.26) goes with every alarm profile but `none`.
"""

from __future__ import annotations

ALERT_INFO = ("Alert-Info", "<http://127.0.0.1/>;info=alert-autoanswer")
CALL_INFO = ("Call-Info", "<sip:127.0.0.1>;answer-after=0")
ANSWER_MODE = ("Answer-Mode", "Auto")
PRIV_ANSWER_MODE = ("Priv-Answer-Mode", "Auto")
PRIORITY = ("Priority", "emergency")

PROFILES: dict[str, tuple[tuple[str, str], ...]] = {
    "generic": (ALERT_INFO, CALL_INFO, ANSWER_MODE, PRIORITY),
    "swyx": (ALERT_INFO, CALL_INFO, PRIORITY),
    "asterisk": (ALERT_INFO, CALL_INFO, ANSWER_MODE, PRIORITY),
    "rfc5373": (ANSWER_MODE, PRIV_ANSWER_MODE, PRIORITY),
    "none": (),
}


def alarm_headers(profile: str) -> dict[str, str]:
    """The headers of `profile`; KeyError names the profiles there are."""
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise KeyError(f"unknown SIP profile {profile!r}; known: {', '.join(PROFILES)}") from None
