"""Runs an engine's program: an argument list (never a shell), text on stdin, a time limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence

from workers.tts.errors import SynthesisError

log = logging.getLogger(__name__)

# A reason is one line the user reads, not a traceback.
_REASON_MAX = 300


async def run(argv: Sequence[str], stdin: bytes, limit_seconds: float, what: str) -> None:
    """Runs argv with `stdin` as its input; SynthesisError when it fails or overruns.

    The text travels on stdin, so whatever it holds (a leading '-', quotes,
    `$(…)`) is never an option or shell syntax. The program runs in its own
    process group, killed whole at the time limit. stdout is discarded: engines
    write their WAV to a file.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise SynthesisError(f"{what} cannot be started: {exc.strerror or exc}") from None
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(stdin), limit_seconds)
    except TimeoutError:
        await _kill(proc)
        raise SynthesisError(f"{what} did not finish within {limit_seconds:g} s") from None
    except BaseException:
        await _kill(proc)
        raise
    if proc.returncode != 0:
        text = stderr.decode("utf-8", "replace")
        log.warning("%s exited with %s: %s", what, proc.returncode, text[-2000:])
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = f"{what} failed (exit code {proc.returncode})"
        if lines:
            reason += ": " + lines[-1][:_REASON_MAX]
        raise SynthesisError(reason)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
