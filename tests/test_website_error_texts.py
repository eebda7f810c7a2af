"""The website words an input refusal in German (or English) from its codes: the field's
label and the reason with its parameters, never the server's English words beside them
(issue 14, point 1; review point 8)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_input_guard import every_target

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "frontend_stub" / "js"
NODE = shutil.which("node")


def _keys(language: str) -> set[str]:
    return set(re.findall(r'^\s*"([^"]+)":', (JS / "texts" / f"{language}.js").read_text(), re.M))


def _website_operations_source() -> str:
    return "\n".join(p.read_text() for p in JS.rglob("*.js") if "texts" not in p.parts)


def _guard_fields_of_website_operations() -> set[str]:
    """Every field name the input guard can report for an operation the website sends,
    a list item's position as N (`userIds.N`)."""
    source = _website_operations_source()
    fields = set()
    for target in every_target():
        if re.search(rf"\b{target.field}\s*[({{]", source):
            path = target.path[1:] if target.path[0] == "input" else target.path
            fields.add(".".join("N" if isinstance(p, int) else str(p) for p in path))
    return fields


@pytest.mark.parametrize("language", ["de", "en"])
def test_every_field_the_guard_reports_for_the_website_has_a_label(language: str) -> None:
    fields = _guard_fields_of_website_operations()
    assert {"description", "search", "filter.startedFrom", "userIds.N"} <= fields
    missing = {f for f in fields if f"field.{f}" not in _keys(language)}
    assert not missing, missing


@pytest.mark.parametrize("language", ["de", "en"])
def test_every_reason_the_server_gives_has_a_sentence(language: str) -> None:
    from api.domain.validation import CHARACTER_REASONS

    # Input refusals only (BadInput: api/domain/validation.py and the guard); other
    # errors' reasons (a license's) are worded by their own pages.
    sources = [ROOT / "api" / "domain" / "validation.py", ROOT / "schema" / "input_guard.py"]
    reasons = {r for p in sources for r in re.findall(r'reason="(\w+)"', p.read_text())}
    reasons |= set(CHARACTER_REASONS)
    assert {"tooLong", "controlCharacter", "noTimeZone", "tooManyItems"} <= reasons
    missing = {r for r in reasons if f"reason.{r}" not in _keys(language)}
    assert not missing, missing


def _explain(language: str, error: dict[str, Any]) -> dict[str, str]:
    """i18n.js's explain() run by node, with the browser's globals it needs stubbed."""
    if NODE is None:
        pytest.skip("node is not installed")
    script = (
        f"globalThis.localStorage = {{ getItem: () => {json.dumps(language)}, setItem() {{}} }};"
        "globalThis.document = { documentElement: {} };"
        f"const m = await import({json.dumps((JS / 'i18n.js').as_uri())});"
        f"console.log(JSON.stringify(m.explain({json.dumps(error)})));"
    )
    done = subprocess.run(
        [NODE, "--experimental-default-type=module", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer: dict[str, str] = json.loads(done.stdout)
    return answer


def _refusal(field: str, message: str, **extensions: Any) -> dict[str, Any]:
    extensions = {"code": "BAD_USER_INPUT", "field": field, **extensions}
    return {"code": "BAD_USER_INPUT", "field": field, "message": message, "extensions": extensions}


@pytest.mark.parametrize(
    ("language", "error", "text"),
    [
        (
            "de",
            _refusal("description", "at most 500 characters", reason="tooLong", max=500),
            "Bitte prüfen Sie das Feld „Beschreibung“: höchstens 500 Zeichen.",
        ),
        (
            "en",
            _refusal("description", "at most 500 characters", reason="tooLong", max=500),
            "Please check the field “Description”: at most 500 characters.",
        ),
        (
            "de",
            _refusal(
                "search",
                "must not contain invisible or direction-changing characters (U+202E)",
                reason="invisibleCharacter",
                character="U+202E",
            ),
            "Bitte prüfen Sie das Feld „Suche“: enthält ein unsichtbares oder die "
            "Schreibrichtung änderndes Zeichen (U+202E).",
        ),
        (
            "de",
            _refusal("userIds.3", "at most 10000 items", reason="tooManyItems", max=10000),
            "Bitte prüfen Sie das Feld „Teilnehmer“: höchstens 10000 Einträge.",
        ),
        (
            "de",
            _refusal("filter.startedFrom", "give the time with its zone", reason="noTimeZone"),
            "Bitte prüfen Sie das Feld „begonnen ab“: die Zeitangabe braucht ihre Zeitzone.",
        ),
        (
            "de",
            _refusal("pin", "the PIN must be 4 to 8 digits", reason="digits", min=4, max=8),
            "Bitte prüfen Sie das Feld „PIN“: 4 bis 8 Ziffern.",
        ),
    ],
)
def test_a_refusal_with_a_known_reason_is_worded_without_the_servers_english(
    language: str, error: dict[str, Any], text: str
) -> None:
    assert _explain(language, error) == {"text": text, "detail": ""}


def test_a_refusal_without_a_known_reason_names_the_field_and_keeps_the_servers_words() -> None:
    """A field without a label is named as the server names it, never left out."""
    answer = _explain("de", _refusal("quorum", "more than the members", reason="someNewCode"))
    assert answer == {
        "text": "Bitte prüfen Sie das Feld „quorum“.",
        "detail": "Meldung des Servers: more than the members",
    }
