"""The server's scrubber for texts from agents (issue 14, point 5): unit tests, no I/O."""

from __future__ import annotations

import json

import pytest

from api.domain.scrub import scrub, scrub_optional

PASSWORD = 'Pbx-"Geheim"\\8841'
PIN = "90817263"


def test_it_hides_known_values_as_they_are_and_as_json_or_repr_writes_them():
    state = {"admin": {"user": "admin", "password": PASSWORD}, "agent_pin": PIN}
    for text in (json.dumps(state), repr(state), f"login {PASSWORD} refused, pin {PIN}"):
        scrubbed = scrub(text, [PASSWORD, PIN])
        assert PASSWORD not in scrubbed and PIN not in scrubbed
        assert "Geheim" not in scrubbed and "8841" not in scrubbed, scrubbed


def test_a_pin_is_hidden_only_where_it_stands_alone():
    text = "PIN 4711 set; the internal number 247110 and 47110 stay"
    assert scrub(text, ["4711"]) == "PIN *** set; the internal number 247110 and 47110 stay"


def test_values_too_short_to_be_secrets_are_not_compared():
    assert scrub("pw of the pwned user", ["pw", None, ""]) == "pw of the pwned user"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login failed: password=hunter22; retry", "login failed: password=***; retry"),
        ('{"password": "hunter22", "user": "admin"}', '{"password": "***", "user": "admin"}'),
        ("{'pin': '1234', 'id': 7}", "{'pin': '***', 'id': 7}"),
        ("Passwort: hunter22", "Passwort: ***"),
        ('api_key="k\\"x" rest', 'api_key="***" rest'),
        ("Set-IpPbxUser -Password hunter22 -Pin 1234", "Set-IpPbxUser -Password *** -Pin ***"),
        ("Authorization: Bearer abcdefghijkl123", "Authorization: Bearer ***"),
        ("header Basic YWRtaW46aHVudGVyMjI=", "header Basic ***"),
        ("token rda_" + "A" * 43 + " was refused", "token *** was refused"),
        ("GET https://admin:hunter22@swyx01:5986/wsman", "GET https://admin:***@swyx01:5986/wsman"),
    ],
)
def test_it_hides_what_looks_like_a_secret_without_knowing_it(text, expected):
    assert scrub(text) == expected


def test_plain_error_texts_pass_unchanged():
    texts = [
        "The internal number 201 is already assigned to user 'Anna Berg'",
        "Login failed for 'admin': wrong user name or password",
        "The PIN may contain digits only",
        "no agent completed this command in time: is the Rundruf Manager Service running?",
        "the announcement cannot be played (not a PCM WAV); the standard message was played",
    ]
    for text in texts:
        assert scrub(text, [PASSWORD, PIN]) == text


def test_none_stays_none():
    assert scrub_optional(None, [PIN]) is None
    assert scrub_optional(f"pin {PIN}", [PIN]) == "pin ***"
