"""Stopping the agent or the job service cleanly when its standard input ends.

A Windows service cannot send its child a signal that Python could handle:
``terminate()`` is TerminateProcess (no cleanup at all) and CTRL_BREAK reaches only
processes that share a console, which a service has none of. So the service host
(edge_agent/windows_service.py) starts the child with ``--stop-with-stdin`` and a
pipe as its standard input, and closes the pipe to stop it; the child also stops
when the host dies. The same works on Linux, where it is tested with real
processes. docs/decisions/windows-portability.md says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, BinaryIO, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
FLAG = "--stop-with-stdin"
STDIN_FD = 0
HELP = (
    "stop cleanly when standard input is closed (how the Windows service host stops it); "
    "interactively, Ctrl+C"
)


def watch_stdin(on_end: Callable[[], object], stream: BinaryIO | None = None) -> threading.Thread:
    """Calls `on_end` (in a thread of its own) once `stream` (standard input) is at its
    end; whatever is written before is read and ignored.

    It reads the file descriptor with ``os.read``, never through ``sys.stdin.buffer``:
    a daemon thread blocked in a buffered read holds the reader's lock, and when the
    process exits for another reason (a refused enrolment, a busy port) the interpreter
    aborts at shutdown (SIGABRT) and the exit code the service host acts on is lost.
    ``os.read`` holds no lock, and works on a pipe's descriptor on Windows too.
    """
    fd = stream.fileno() if stream is not None else STDIN_FD

    def wait() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except (OSError, ValueError) as exc:  # a broken or closed pipe ends it too
            log.debug("standard input failed: %r", exc)
        log.info("standard input closed: stopping")
        on_end()

    thread = threading.Thread(target=wait, name="stop-with-stdin", daemon=True)
    thread.start()
    return thread


async def until_stdin_closes(
    work: Coroutine[Any, Any, T], stream: BinaryIO | None = None
) -> T | None:
    """Runs `work` until it ends, or until standard input ends: then `work` is
    cancelled (its ``finally`` blocks run) and None is returned."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    asked = threading.Event()

    def stop() -> None:
        asked.set()
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            loop.call_soon_threadsafe(task.cancel)

    watch_stdin(stop, stream)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if asked.is_set() and current is not None and not current.cancelling():
            return None  # our stop, not a cancellation from outside
        raise
