"""Every mutation that changes something writes an audit entry (issue 17, point 7).

The walk takes the schema's Mutation fields; each runs as its rightful caller with the
authorization table's case (tests/test_authorization.py, which has one per field). A
mutation either writes an entry naming its tenant, or is on EXEMPT with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from api.models import AuditLog
from schema.schema import build_schema
from tests.test_authorization import _rightful_token, _run, _variables

# Not "who changed what": a person's own session, and the agent's reports of what
# happened (they are the history and the health themselves, many a minute).
EXEMPT = {
    "login": "signs in; the session and the login counter are its record",
    "logout": "ends the caller's own session",
    "completeCommand": "the agent reports a command's result; the command row records it",
    "reportBroadcast": "the agent reports calls; the broadcast history is its record",
    "reportHealth": "the agent's heartbeat, every poll interval; the installation row holds it",
    "reportNotice": "the agent's notices; the notice table and the watchdog record them",
}


TEXTS = Path(__file__).resolve().parent.parent / "frontend_stub" / "js" / "texts"


def _worded(key: str) -> bool:
    """The audit page words the code in German and English (else it shows the code)."""
    return all(f'"{key}":' in (TEXTS / f"{lang}.js").read_text() for lang in ("de", "en"))


def _mutations() -> list[str]:
    mutation = build_schema()._schema.mutation_type
    assert mutation is not None
    return sorted(mutation.fields)


def test_the_exempt_list_names_only_mutations_of_the_schema():
    assert set(EXEMPT) <= set(_mutations())


@pytest.mark.parametrize("name", [m for m in _mutations() if m not in EXEMPT])
async def test_each_mutation_writes_an_audit_entry(name, gql, rt, world):
    key = f"Mutation.{name}"
    variables = await _variables(gql, rt, key, world, world.a)
    async with rt.db.reading() as s:
        before = set(await s.scalars(select(AuditLog.id)))
    body = await _run(gql, rt, _rightful_token(world, key), key, world, world.a, variables)
    assert not body.get("errors"), body
    async with rt.db.reading() as s:
        new = [r for r in await s.scalars(select(AuditLog)) if r.id not in before]
    assert new, f"{name} changed something but wrote no audit entry"
    for row in new:
        assert row.action and len(row.action) <= 64
        assert _worded(f"audit.action.{row.action}"), f"{row.action}: no words on the website"
        for detail in row.details or {}:
            assert _worded(f"audit.detail.{detail}"), f"{row.action}.{detail}: no words"
        # An entry in a tenant names it, so its administrators see it.
        if name not in ("createTenant", "registerInstallation"):
            assert row.tenant_id is not None, (name, row.action)
