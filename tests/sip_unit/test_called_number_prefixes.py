"""RUNDRUF_AGENT_SIP_NUMBER_PREFIXES (review of issue 16, finding 8): '+49 30 1234 990'
and '0990' reach extension 990 only when their prefixes are configured."""

from __future__ import annotations

import pytest

from edge_agent.sip.called_number import called_candidates, parse_prefixes
from tests.sip_unit.test_called_number import invite


def test_exact_match_stays_the_default() -> None:
    assert called_candidates(invite("sip:0990@10.0.0.5"), "request-uri") == ("0990",)
    request = invite("tel:+49-30-1234-990")
    assert called_candidates(request, "request-uri") == ("+49301234990",)


def test_configured_prefixes_are_stripped_longest_first() -> None:
    prefixes = parse_prefixes("0, +49 30 1234")
    assert prefixes == ("+49301234", "0")
    assert called_candidates(invite("sip:0990@10.0.0.5"), "request-uri", prefixes) == (
        "0990",
        "990",
    )
    request = invite("sip:%2B49%2030%201234%20990@10.0.0.5")
    assert called_candidates(request, "request-uri", prefixes) == ("+49301234990", "990")
    # A number that is only the prefix stays as it is.
    assert called_candidates(invite("sip:0@10.0.0.5"), "request-uri", prefixes) == ("0",)


@pytest.mark.parametrize("text", ["49a", "+", "0,1,2,3,4,5,6,7,8", "1" * 17])
def test_a_wrong_prefix_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_prefixes(text)
