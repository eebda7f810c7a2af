"""Which system and which event loop the agent and the job service run on.

Every Windows or POSIX branch asks one of these functions, called through this
module (``platforms.on_windows()``), so that a test can patch the answer and run
the Windows branch on Linux. The portability test (tests/agent/test_portability.py)
counts an ``if`` that calls one of them as a guarded branch.
"""

from __future__ import annotations

import asyncio
import sys


def on_windows() -> bool:
    return sys.platform == "win32"


def on_linux() -> bool:
    return sys.platform.startswith("linux")


def loop_has_readers(loop: asyncio.AbstractEventLoop) -> bool:
    """True where `loop.add_reader` works: the selector loops (Linux's default, and
    uvloop). Windows' proactor loop, the agent's there, inherits the abstract method,
    which raises NotImplementedError."""
    return type(loop).add_reader is not asyncio.AbstractEventLoop.add_reader
