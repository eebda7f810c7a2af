"""Every detail an audit entry is written with has words on the audit page, in German and
English (review of issue 17, L2: notice.report's caller_number, count and at showed as
codes). A static walk of api/: the walk over the mutations (test_audit_walk.py) does not
reach entries written by the agent's reports or by the scheduler."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_audit_walk import _worded

API = Path(__file__).resolve().parent.parent / "api"
# audit.record's own parameters (and notices.record's); every other keyword is a detail.
PARAMETERS = {"tenant_id", "target"}
# Details passed as a **mapping, which the walk cannot read (api/services/pbx.py).
SPREAD = {"pollIntervalSeconds", "broadcastTimeoutSeconds"}


def _detail_keys() -> dict[str, str]:
    """Each detail key passed to audit.record anywhere in api/, with where."""
    found: dict[str, str] = {}
    for path in sorted(API.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                # notices.record called inside notices.py itself
                if node.func.id == "record" and path.name == "notices.py":
                    for keyword in node.keywords:
                        if keyword.arg is not None and keyword.arg not in PARAMETERS:
                            found.setdefault(keyword.arg, f"{path.name}:{node.lineno}")
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            # audit.record, and notices.record whose keywords end up in audit.record.
            if node.func.attr != "record" or not (
                isinstance(owner, ast.Name) and owner.id in ("audit", "notices")
            ):
                continue
            for keyword in node.keywords:
                # A **mapping hides its keys from this walk; SPREAD names them.
                if keyword.arg is not None and keyword.arg not in PARAMETERS:
                    found.setdefault(keyword.arg, f"{path.relative_to(API.parent)}:{node.lineno}")
    return found | {k: "api/services/pbx.py" for k in SPREAD}


def test_the_walk_finds_the_details_it_should():
    keys = _detail_keys()
    assert {"reason", "mode", "caller_number", "count", "at"} <= set(keys)


def test_every_detail_key_has_words_in_german_and_english():
    missing = {k: where for k, where in _detail_keys().items() if not _worded(f"audit.detail.{k}")}
    assert missing == {}
