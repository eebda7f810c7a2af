"""The heartbeat's answer: when to report next, and the tenant's language.

The language came with issue 16 (the agent's own trigger-call line speaks it): a
central service from before it refuses the question for it as a whole
("Cannot query field 'language' on type 'HealthAck'"). The agent then asks without it
for an hour (RECHECK_S; the service may be updated meanwhile) and keeps the language it
has, which an updateSettings command may still change.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge_agent.errors import ServerRefused

log = logging.getLogger(__name__)

LANGUAGES = frozenset({"de", "en"})
RECHECK_S = 3600.0
WITH_LANGUAGE = """mutation($input: HealthInput!) {
  reportHealth(input: $input) { pollIntervalSeconds language }
}"""
PLAIN = """mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }"""
# graphql-core's words for a field the schema lacks, with the code schema/errors.py gives.
_NO_LANGUAGE = re.compile(r"Cannot query field 'language' on type 'HealthAck'")


@dataclass(frozen=True)
class HealthAnswer:
    poll_interval_seconds: int
    language: str | None  # "de" or "en"; None: the service did not say


def language_of(value: object) -> str | None:
    """The service's `Language` name (DE, EN) as the cache keeps it; None if unknown."""
    code = value.lower() if isinstance(value, str) else None
    return code if code in LANGUAGES else None


def lacks_language(exc: ServerRefused) -> bool:
    """Whether `exc` is an older service refusing the question for the language."""
    return exc.code == "GRAPHQL_VALIDATION_FAILED" and _NO_LANGUAGE.match(exc.answer) is not None


class HealthQuestion:
    """Which question the heartbeat asks: with the language, unless the service refused
    it within the last RECHECK_S."""

    def __init__(
        self, recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.recheck_s = recheck_s
        self._clock = clock
        self._plain_until: float | None = None

    def query(self) -> str:
        if self._plain_until is not None and self._clock() < self._plain_until:
            return PLAIN
        return WITH_LANGUAGE

    def refused(self, exc: ServerRefused) -> bool:
        """True (ask again without it) when `exc` refused the language question."""
        if self.query() == PLAIN or not lacks_language(exc):
            return False
        self._plain_until = self._clock() + self.recheck_s
        log.warning(
            "the central service does not know the tenant's language in its heartbeat answer "
            "(an older version): asking without it for %.0f minutes",
            self.recheck_s / 60,
        )
        return True

    @staticmethod
    def answer(data: Mapping[str, object]) -> HealthAnswer:
        ack = data["reportHealth"]
        assert isinstance(ack, Mapping)
        return HealthAnswer(int(ack["pollIntervalSeconds"]), language_of(ack.get("language")))
