"""The trigger call's dialogue, defined once: prompts, keys, tries and timings.

The caller dials a group's agent number, enters the PIN (then #), picks a mode,
confirms, and the alarm starts. Three implementations run this dialogue:

- rundruf.lua on SwyxWare (swyx_jobservice/callrouting/), whose M.DEFAULTS,
  M.KEYS and M.PROMPTS must equal the tables here
  (tests/callrouting/test_ivr_definition.py runs the script and compares);
- the SwyxWare simulator's twin (edge_agent/pbx/sim_callflow.py, sim_trigger.py);
- the agent's own SIP IVR (edge_agent/ivr/flow.py).

Prompt files are 8 kHz 16-bit mono PCM WAVs (telephony masters) of the same names
per language (`de`, `en`); TEXTS is what they say (make_prompts.py speaks them).
"""

from __future__ import annotations

from typing import Final

# Tunables, by the names rundruf.lua's M.DEFAULTS uses. Seconds unless named otherwise.
DEFAULTS: Final[dict[str, int | float | tuple[int, ...]]] = {
    "pin_tries": 3,  # PIN attempts per call
    "pin_max_digits": 16,
    "digit_timeout": 10,  # seconds without a key press before input ends
    # Seconds that must pass after a caller's n-th wrong PIN before the next try is
    # accepted (entry n + 1; the last entry repeats). Per caller number, across calls.
    "throttle_delays": (0, 2, 5, 10, 20, 30, 60),
    "throttle_forget": 3600,  # a caller's count starts over after this long
    "notice_threshold": 10,  # wrong PINs for the group, from anyone, within ...
    "notice_window": 600,  # ... this make one wrong-PIN notice (at most one per window)
    "menu_rounds": 5,  # menu prompts per call before giving up
    "record_max_seconds": 60,
    "record_silence_seconds": 2,  # a recording ends after this long without speech
    # ... and after this long without any speech since the tone (the agent's IVR only:
    # SwyxWare's RecordMessage takes no such time; rundruf.lua keeps it for agreement).
    "record_no_speech_seconds": 5,
    "record_takes": 3,
    # POST /jobs (Lua only) is retried with one idempotency key for this long.
    "post_window": 15,
    "post_backoff_first": 0.5,
    "post_backoff_max": 4,
}

# Keys, by the names rundruf.lua's M.KEYS uses.
KEYS: Final[dict[str, str]] = {
    "pin_end": "#",  # ends the PIN entry
    "test": "1",  # menu: test (mode 1)
    "alarm": "2",  # menu: alarm with the stored message (mode 2)
    "alarm_recorded": "3",  # menu: alarm with a message recorded now (mode 3)
    "cancel": "*",  # menu: cancel, nothing is triggered
    "confirm": "1",  # confirmation of mode 1 or 2; any other key goes back to the menu
    "record_end": "#",  # ends the recording
    "record_send": "1",  # after the playback: send (this is mode 3's confirmation)
    "record_again": "2",  # after the playback: record again
    "stop": "0",  # menu: stop the group's running broadcast (issue 17)
}

# Prompt name -> file name, as rundruf.lua's M.PROMPTS.
PROMPTS: Final[dict[str, str]] = {
    "pin": "rundruf_pin.wav",
    "pin_wrong": "rundruf_pin_falsch.wav",
    "wait": "rundruf_bitte_warten.wav",
    "menu": "rundruf_menue.wav",
    "invalid": "rundruf_ungueltig.wav",
    "confirm_test": "rundruf_bestaetigen_test.wav",
    "confirm_alarm": "rundruf_bestaetigen_alarm.wav",
    "record": "rundruf_aufnahme.wav",
    "record_check": "rundruf_aufnahme_pruefen.wav",
    "record_failed": "rundruf_aufnahme_fehler.wav",
    "triggered": "rundruf_ausgeloest.wav",
    "failed": "rundruf_fehler.wav",
    "cancelled": "rundruf_abgebrochen.wav",
    "goodbye": "rundruf_auf_wiederhoeren.wav",
    # A stop (issue 17): the caller hears it after the menu's 0, and every member still
    # on a call of the stopped broadcast hears it before the hang-up.
    "stopped": "rundruf_beendet.wav",
    "stop_none": "rundruf_kein_laufender.wav",  # the 0 with no broadcast running
}

LANGUAGES: Final[tuple[str, ...]] = ("de", "en")

# File name -> language -> what the prompt says.
TEXTS: Final[dict[str, dict[str, str]]] = {
    "rundruf_pin.wav": {
        "de": "Rundruf. Bitte geben Sie die PIN ein und bestätigen Sie mit der Raute-Taste.",
        "en": "Broadcast. Please enter the PIN and finish with the hash key.",
    },
    "rundruf_pin_falsch.wav": {
        "de": "Die PIN ist falsch.",
        "en": "The PIN is wrong.",
    },
    "rundruf_bitte_warten.wav": {
        "de": "Bitte warten Sie einen Moment.",
        "en": "Please wait a moment.",
    },
    "rundruf_menue.wav": {
        "de": (
            "Test: Taste 1. Alarm mit hinterlegter Ansage: Taste 2. "
            "Alarm mit neuer Ansage: Taste 3. Laufenden Rundruf beenden: Taste 0. "
            "Abbrechen: Stern-Taste."
        ),
        "en": (
            "Test: press 1. Alarm with the stored message: press 2. "
            "Alarm with a new message: press 3. Stop the running broadcast: press 0. "
            "Cancel: press star."
        ),
    },
    "rundruf_ungueltig.wav": {
        "de": "Diese Eingabe ist ungültig.",
        "en": "This entry is not valid.",
    },
    "rundruf_bestaetigen_test.wav": {
        "de": (
            "Test gewählt. Zum Starten drücken Sie die 1, zurück zum Menü mit jeder anderen Taste."
        ),
        "en": "Test selected. Press 1 to start, any other key returns to the menu.",
    },
    "rundruf_bestaetigen_alarm.wav": {
        "de": (
            "Alarm mit hinterlegter Ansage. Alle Teilnehmer werden angerufen, auch in laufenden "
            "Gesprächen. Zum Auslösen drücken Sie die 1, zurück zum Menü mit jeder anderen Taste."
        ),
        "en": (
            "Alarm with the stored message. Every member is called, also during other calls. "
            "Press 1 to raise the alarm, any other key returns to the menu."
        ),
    },
    "rundruf_aufnahme.wav": {
        "de": (
            "Bitte sprechen Sie nach dem Ton Ihre Ansage, höchstens 60 Sekunden. "
            "Beenden Sie mit der Raute-Taste."
        ),
        "en": (
            "Please speak your message after the tone, at most 60 seconds. "
            "Finish with the hash key."
        ),
    },
    "rundruf_aufnahme_pruefen.wav": {
        "de": "Zum Senden drücken Sie die 1, zum neu Aufnehmen die 2.",
        "en": "Press 1 to send, press 2 to record again.",
    },
    "rundruf_aufnahme_fehler.wav": {
        "de": "Die Aufnahme ist fehlgeschlagen.",
        "en": "The recording failed.",
    },
    "rundruf_ausgeloest.wav": {
        "de": "Rundruf wird ausgelöst.",
        "en": "The broadcast is being raised.",
    },
    "rundruf_fehler.wav": {
        "de": "Der Rundruf konnte nicht ausgelöst werden. Bitte alarmieren Sie auf anderem Weg.",
        "en": "The broadcast could not be raised. Please raise the alarm another way.",
    },
    "rundruf_abgebrochen.wav": {
        "de": "Abgebrochen. Es wurde kein Rundruf ausgelöst.",
        "en": "Cancelled. No broadcast was raised.",
    },
    "rundruf_beendet.wav": {
        "de": "Der Rundruf wurde beendet.",
        "en": "The broadcast has been stopped.",
    },
    "rundruf_kein_laufender.wav": {
        "de": "Es läuft kein Rundruf dieser Gruppe.",
        "en": "No broadcast of this group is running.",
    },
    "rundruf_auf_wiederhoeren.wav": {
        "de": "Auf Wiederhören.",
        "en": "Goodbye.",
    },
}

# The tone before a recording starts (mode 3): 1 kHz for 300 ms, as answering machines.
RECORD_TONE_HZ: Final = 1000
RECORD_TONE_MS: Final = 300
# Telephony masters: what every prompt file is.
SAMPLE_RATE: Final = 8000
SAMPLE_WIDTH: Final = 2
CHANNELS: Final = 1


def setting(name: str) -> int | float:
    """A scalar tunable; KeyError for an unknown name."""
    value = DEFAULTS[name]
    if isinstance(value, tuple):
        raise KeyError(f"{name} is not a scalar")
    return value
