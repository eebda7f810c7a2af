"""Scenarios that run in unprivileged Linux namespaces of their own (``unshare``) and
print their result as JSON on their last line; a mark that skips where that is not
allowed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _namespaces_work() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rmn", "true"], capture_output=True, timeout=10, check=False
    )
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="needs unshare -rmn (Linux)")


def scenario_result(command: list[str], timeout_s: float) -> dict[str, Any]:
    """`command` (an unshare line) run from the repository's root; it must succeed, and
    its last line of output is its result."""
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
