"""What the reporter makes of a central service that refuses an event kind
(edge_agent/broadcast/report_compat.py; the real service: tests/test_report_compat_e2e.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from edge_agent.broadcast.journal import Journal
from edge_agent.broadcast.model import COMPLETED, Broadcast, Member
from edge_agent.broadcast.report_compat import WithheldKinds, refused_kind
from edge_agent.broadcast.reporter import Reporter
from edge_agent.errors import ServerRefused
from edge_agent.server import REPORT, graphql
from edge_agent.server import Server as AgentServer


def legacy(kind: str) -> ServerRefused:
    """The refusal of a central service from before report_kinds.py."""
    answer = f"unknown event kind {kind!r}"
    extensions = {"code": "BAD_USER_INPUT", "field": "events"}
    return ServerRefused(
        f"BAD_USER_INPUT: {answer}", code="BAD_USER_INPUT", extensions=extensions, answer=answer
    )


@pytest.mark.parametrize(
    ("refusal", "kind"),
    [
        (legacy("held"), "held"),
        (ServerRefused("x", code="BAD_USER_INPUT", extensions={"unknownEventKind": "x2"}), "x2"),
        # Other refusals, or the same words elsewhere, name no kind.
        (ServerRefused("x", code="BAD_USER_INPUT", answer="unknown event kind 'held'"), None),
        (
            ServerRefused(
                "x",
                code="FORBIDDEN",
                extensions={"field": "events"},
                answer="unknown event kind 'held'",
            ),
            None,
        ),
        (legacy("held' or 'x"), None),
        (ServerRefused("HTTP 413"), None),
    ],
)
def test_the_refused_kind_is_read_from_the_extension_or_the_older_services_words(
    refusal: ServerRefused, kind: str | None
) -> None:
    assert refused_kind(refusal) == kind


async def test_the_agent_reads_code_and_extensions_of_a_graphql_refusal() -> None:
    body = {
        "data": None,
        "errors": [
            {
                "message": "unknown event kind 'held'",
                "extensions": {"code": "BAD_USER_INPUT", "field": "events"},
            }
        ],
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(ServerRefused) as refused:
            await graphql(client, "http://central/graphql", REPORT, {}, "token")
    assert refused.value.code == "BAD_USER_INPUT"
    assert refused.value.extensions == {"code": "BAD_USER_INPUT", "field": "events"}
    assert refused_kind(refused.value) == "held"


class Refusing:
    """A central service that refuses every report naming one of `refused` (by the older
    services' words); records what each report carried."""

    def __init__(self, *refused: str) -> None:
        self.refused = set(refused)
        self.sent: list[list[str]] = []

    async def report_broadcast(self, report: dict[str, Any]) -> int:
        kinds = [e["kind"] for e in report["events"]]
        self.sent.append(kinds)
        for kind in kinds:
            if kind in self.refused:
                raise legacy(kind)
        return max((e["seq"] for e in report["events"]), default=0)


STEPS = ["started", "answered", "held", "resumed", "confirmed", "ended"]


async def one_held_call(tmp_path: Path, steps: list[str] = STEPS) -> Journal:
    journal = Journal(tmp_path / "journal.sqlite")
    now = datetime.now(UTC) - timedelta(minutes=1)
    b = Broadcast("b-1", "command", "c-1", "g1", 2, now, now + timedelta(minutes=5))
    await journal.create(b, [Member(0, "u0", "Anna", "200")])
    await journal.record_many(
        "b-1",
        [
            (
                "u0",
                1,
                kind,
                now + timedelta(seconds=i),
                "confirmed" if kind == "ended" else None,
                None,
            )
            for i, kind in enumerate(steps)
        ],
    )
    await journal.finish("b-1", COMPLETED, now + timedelta(seconds=30), "")
    return journal


async def test_a_refused_kind_that_every_service_knows_is_not_left_out(tmp_path: Path) -> None:
    """Only kinds added after the first service may go: "ended" is the outcome."""
    journal = await one_held_call(tmp_path)
    server = Refusing("ended")
    reporter = Reporter(journal, cast(AgentServer, server), None, 60)
    try:
        assert await reporter.settle() is True  # refused: waits, as before
        assert server.sent == [["started", "answered", "held", "resumed", "confirmed", "ended"]]
        assert reporter.withheld.current() == frozenset()
        assert (await journal.get("b-1")).acked_seq == 0
    finally:
        await journal.close()


async def test_a_batch_whose_last_events_are_left_out_counts_as_delivered(
    tmp_path: Path,
) -> None:
    """The service stores up to the last event it got; the held one after it was left
    out on purpose and must not make the agent wait for it forever."""
    journal = await one_held_call(tmp_path, [*STEPS, "held"])  # one more after the end
    server = Refusing("held", "resumed")
    clock = [0.0]
    reporter = Reporter(journal, cast(AgentServer, server), None, 60)
    reporter.withheld = WithheldKinds(recheck_s=60, clock=lambda: clock[0])
    try:
        assert await reporter.settle() is False
        assert server.sent[-1] == ["started", "answered", "confirmed", "ended"]
        assert len(server.sent) == 3  # held refused, resumed refused, the rest
        b = await journal.get("b-1")
        assert (b.acked_seq, b.final_acked, b.source_done) == (7, True, True)
        assert reporter.withheld.current() == {"held", "resumed"}
        clock[0] = 60
        assert reporter.withheld.current() == frozenset()  # offered again later
    finally:
        await journal.close()
