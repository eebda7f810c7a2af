"""The TTS work: a pending announcement's text becomes its audio, or its reason to fail.

`synthesize_announcement` is what the Dramatiq actor runs for one id; the
sweep finds announcements whose message was lost (the pending row is the
queue, Redis only wakes workers up). Both are idempotent: the result is stored
only while the announcement still waits for exactly the text that was spoken
(`announcements.store_synthesised`), so a repeated, late or concurrent run
stores nothing twice; at worst two workers speak the same text once each.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from api.errors import Conflict
from api.runtime import Runtime
from api.services import announcements
from workers.tts import engine as engines
from workers.tts.errors import SynthesisError

log = logging.getLogger(__name__)


async def synthesize_announcement(rt: Runtime, announcement_id: uuid.UUID) -> None:
    """Speaks the announcement's text with the configured engine and stores the audio.

    READY with a setAnnouncement command for the agent on success; FAILED with
    the reason the user sees (`error`) when the engine fails or the text breaks
    the length limit; nothing at all when the announcement no longer waits.
    """
    job = await announcements.synthesis_job(rt, announcement_id)
    if job is None:
        log.info("announcement %s no longer waits for speech", announcement_id)
        return
    text, language = job
    limit = rt.settings.tts_max_chars
    if len(text) > limit:
        await announcements.fail_synthesis(
            rt, announcement_id, text, language, f"the text is longer than {limit} characters"
        )
        return
    engine = engines.from_settings(rt.settings)
    try:
        data = await engine.synthesize(text, language)
    except SynthesisError as err:
        log.warning("announcement %s: %s failed: %s", announcement_id, engine.name, err)
        await announcements.fail_synthesis(
            rt, announcement_id, text, language, f"text-to-speech failed: {err}"
        )
        return
    try:
        stored = await announcements.store_synthesised(rt, announcement_id, text, language, data)
    except Conflict as err:  # the license lapsed meanwhile: nothing may go to the agent
        await announcements.fail_synthesis(rt, announcement_id, text, language, err.message)
        return
    if stored is None:
        log.info("announcement %s changed while it was spoken; dropped", announcement_id)
    else:
        log.info("announcement %s: %s, %s", announcement_id, stored.status.value, engine.name)


def sweep_age(rt: Runtime) -> timedelta:
    """How long a pending announcement waits before the sweep takes it as lost.

    Longer than a synthesis may run, so the sweep does not race a worker that
    is still speaking it.
    """
    return timedelta(seconds=2 * rt.settings.tts_timeout_seconds + 60)


async def pending_announcements(rt: Runtime, min_age: timedelta | None = None) -> list[uuid.UUID]:
    """Ids of announcements still waiting for speech after min_age, oldest first."""
    age = sweep_age(rt) if min_age is None else min_age
    return await announcements.pending_syntheses(rt, rt.clock() - age)


async def synthesize_pending(rt: Runtime, min_age: timedelta | None = None) -> int:
    """Speaks every announcement the sweep finds, one after the other; how many it found."""
    ids = await pending_announcements(rt, min_age)
    for announcement_id in ids:
        await synthesize_announcement(rt, announcement_id)
    return len(ids)
