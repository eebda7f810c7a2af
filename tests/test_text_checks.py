"""The shared checks of texts and times from outside (api/domain/validation.py): what a
person types, what an agent reports, and when. Unit tests (no I/O) and one request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.domain import validation
from api.errors import BadInput
from tests.conftest import error_codes
from tests.test_health_report import post_ascii

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["a\x07b", "a\x7fb", "a\u0085b", "a\u2028b", "a\u2029b", "\u202eexe.pdf", "a\u2066b", "\ud800"],
)
def test_a_name_refuses_controls_separators_bidi_overrides_and_lone_surrogates(text: str) -> None:
    with pytest.raises(BadInput) as refused:
        validation.name(text, "name")
    assert refused.value.details["field"] == "name"


@pytest.mark.parametrize(
    "text", ["Müller\u00a0GmbH", "Brand\u00adschutz", "Team 🚒", "Zürich - Süd"]
)
def test_a_name_keeps_what_people_paste_from_documents(text: str) -> None:
    assert validation.name(text, "name") == text


@pytest.mark.parametrize("text", ["a\u00a0b", "a\u00adb", "a\tb", "\udfff", "a\u2028b"])
def test_an_agents_text_is_printable_or_refused(text: str) -> None:
    with pytest.raises(BadInput) as refused:
        validation.printable(text, "detail", 200)
    assert refused.value.details["field"] == "detail"


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:00:00-05:00",
        "9999-12-31T23:59:59+00:00",
        "1999-12-31T23:59:59+00:00",
        (NOW + timedelta(days=1, seconds=1)).isoformat(),
    ],
)
def test_a_reported_time_outside_2000_to_a_day_ahead_is_refused(at: str) -> None:
    with pytest.raises(BadInput) as refused:
        validation.moment(datetime.fromisoformat(at), "since", NOW)
    assert refused.value.details["field"] == "since"


def test_a_reported_time_is_given_back_in_utc() -> None:
    at = datetime.fromisoformat("2026-12-07T04:00:00-05:00")
    assert validation.moment(at, "since", NOW) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert validation.moment(at, "since", NOW).tzinfo is UTC


async def test_a_group_name_with_a_lone_surrogate_is_bad_input_not_a_server_error(gql, world):
    body = await post_ascii(
        gql,
        world.tokens["owner"],
        "mutation($n: String!) { createGroup(name: $n) { id } }",
        n="Technik\ud800",
    )
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "name"
