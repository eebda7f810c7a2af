"""synthesize_announcement end to end on PostgreSQL: GraphQL request → engine → READY + command."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from api.models import (
    Announcement,
    AudioBlob,
    Command,
    Language,
    License,
)
from api.runtime import Runtime
from tests.conftest import make_settings
from tests.workers.tts_support import master_of, need_coqui, rms, shared_tiny_model
from workers.tts import engine as engines
from workers.tts import synthesis
from workers.tts.engine import Engine
from workers.tts.espeak import EspeakEngine

SYNTHESIZE = """
mutation($group: ID!, $kind: AnnouncementKind!, $text: String!, $language: Language!) {
  synthesizeAnnouncement(groupId: $group, kind: $kind, text: $text, language: $language) {
    announcement { id status }
  }
}
"""
ANNOUNCEMENTS = """
query($group: ID!) { group(id: $group) { broadcast { announcements {
  id kind source status error text language durationMs telephonyUrl } } } }
"""
GERMAN = "Achtung, dies ist ein Probealarm. Bitte verlassen Sie das Gebäude."
ENGLISH = "Attention, this is a fire drill. Please leave the building."


async def request(gql, world, text: str, language: str = "DE", kind: str = "ALARM") -> uuid.UUID:
    body = await gql.as_(world.tokens["owner"]).ok(
        SYNTHESIZE, group=str(world.a.group_id), kind=kind, text=text, language=language
    )
    assert body["synthesizeAnnouncement"]["announcement"]["status"] == "PENDING"
    return uuid.UUID(body["synthesizeAnnouncement"]["announcement"]["id"])


async def shown(gql, world, ann_id: uuid.UUID) -> dict[str, Any]:
    """The announcement as its tenant's admin sees it in GraphQL."""
    data = await gql.as_(world.tokens["owner"]).ok(ANNOUNCEMENTS, group=str(world.a.group_id))
    (ann,) = [a for a in data["group"]["broadcast"]["announcements"] if a["id"] == str(ann_id)]
    return ann


async def set_commands(rt: Runtime) -> list[Command]:
    async with rt.db.reading() as s:
        return list(await s.scalars(select(Command).where(Command.type == "setAnnouncement")))


async def blob_count(rt: Runtime) -> int:
    async with rt.db.reading() as s:
        return int(await s.scalar(select(func.count()).select_from(AudioBlob)) or 0)


async def master_bytes(rt: Runtime, ann_id: uuid.UUID) -> bytes:
    async with rt.db.reading() as s:
        ann = await s.get_one(Announcement, ann_id)
        master = await s.get_one(AudioBlob, ann.telephony_id)
        await s.refresh(master, ["data"])
        return master.data


def with_settings(rt: Runtime, **overrides: Any) -> Runtime:
    return dataclasses.replace(rt, settings=make_settings(**overrides))


# --------------------------------------------------------------------------- the happy path


@pytest.mark.parametrize(("language", "text"), [("DE", GERMAN), ("EN", ENGLISH)])
async def test_it_speaks_the_text_and_sends_the_master_to_the_agent(gql, rt, world, language, text):
    ann_id = await request(gql, world, text, language)

    await synthesis.synthesize_announcement(rt, ann_id)

    ann = await shown(gql, world, ann_id)
    assert (ann["status"], ann["error"], ann["source"]) == ("READY", None, "TTS")
    assert (ann["text"], ann["language"]) == (text, language.lower())
    master = master_of(await master_bytes(rt, ann_id))
    assert master.description == "16-bit PCM, mono, 8000 Hz"
    assert 2_000 < master.duration_ms < 15_000
    assert rms(master) > 300
    (command,) = await set_commands(rt)
    async with rt.db.reading() as s:
        stored = await s.get_one(Announcement, ann_id)
    assert command.tenant_id == world.a.tenant_id
    assert command.payload["kind"] == "alarm"
    assert command.payload["audioId"] == str(stored.telephony_id)
    assert command.payload["durationMs"] == master.duration_ms


async def test_running_it_again_changes_nothing(gql, rt, world):
    ann_id = await request(gql, world, GERMAN)
    await synthesis.synthesize_announcement(rt, ann_id)
    blobs = await blob_count(rt)

    await synthesis.synthesize_announcement(rt, ann_id)
    await synthesis.synthesize_announcement(rt, uuid.uuid4())  # unknown: nothing happens

    assert await blob_count(rt) == blobs
    assert len(await set_commands(rt)) == 1


async def test_text_with_options_and_shell_syntax_is_spoken_as_words(gql, rt, world, tmp_path):
    marker = tmp_path / "owned"
    text = f"-v en --help; $(touch {marker}) `reboot` | rm -rf / & echo done"
    ann_id = await request(gql, world, text, "EN")

    await synthesis.synthesize_announcement(rt, ann_id)

    assert (await shown(gql, world, ann_id))["status"] == "READY"
    assert not await _exists(marker)
    assert master_of(await master_bytes(rt, ann_id)).duration_ms > 3_000


async def _exists(path: Path) -> bool:
    return path.exists()  # noqa: ASYNC240 - one stat in a test


async def test_the_coqui_engine_speaks_it_too(gql, rt, world):
    need_coqui()
    model, config = shared_tiny_model()
    coqui_rt = with_settings(
        rt,
        tts_engine="coqui",
        tts_coqui_model_path=model,
        tts_coqui_config_path=config,
        tts_coqui_python=need_coqui(),
        tts_coqui_languages=["de", "en"],
    )
    ann_id = await request(gql, world, ENGLISH, "EN")

    await synthesis.synthesize_announcement(coqui_rt, ann_id)

    assert (await shown(gql, world, ann_id))["status"] == "READY"
    master = master_of(await master_bytes(rt, ann_id))
    assert master.description == "16-bit PCM, mono, 8000 Hz"
    assert master.duration_ms > 1_000
    assert len(await set_commands(rt)) == 1


# --------------------------------------------------------------------------- failures


async def test_an_engine_failure_fails_the_announcement_with_the_reason(gql, rt, world, tmp_path):
    broken = with_settings(rt, tts_espeak_binary=str(tmp_path / "espeak-ng"))
    ann_id = await request(gql, world, GERMAN)

    await synthesis.synthesize_announcement(broken, ann_id)

    ann = await shown(gql, world, ann_id)
    assert ann["status"] == "FAILED"
    assert ann["error"] == (
        "text-to-speech failed: espeak-ng cannot be started: No such file or directory"
    )
    assert ann["telephonyUrl"] is None
    assert await set_commands(rt) == []
    # The sweep does not take it up again: it waits no more.
    assert await synthesis.pending_announcements(rt, timedelta(0)) == []


async def test_a_coqui_model_for_another_language_fails_the_announcement(gql, rt, world):
    model, config = shared_tiny_model()
    german_only = with_settings(
        rt,
        tts_engine="coqui",
        tts_coqui_model_path=model,
        tts_coqui_config_path=config,
        tts_coqui_python=need_coqui(),
    )
    ann_id = await request(gql, world, ENGLISH, "EN")

    await synthesis.synthesize_announcement(german_only, ann_id)

    ann = await shown(gql, world, ann_id)
    assert ann["status"] == "FAILED"
    assert ann["error"] == (
        "text-to-speech failed: the coqui-tts model speaks de, not en (RUNDRUF_TTS_COQUI_LANGUAGES)"
    )


async def test_a_text_over_the_length_limit_fails_without_speaking(gql, rt, world):
    ann_id = await request(gql, world, "x" * 40)
    # The limit was lowered after the text was accepted.
    await synthesis.synthesize_announcement(with_settings(rt, tts_max_chars=20), ann_id)

    ann = await shown(gql, world, ann_id)
    assert (ann["status"], ann["error"]) == ("FAILED", "the text is longer than 20 characters")


async def test_the_length_limit_is_checked_when_the_text_is_given(gql, world):
    body = await gql.as_(world.tokens["owner"])(
        SYNTHESIZE, group=str(world.a.group_id), kind="TEST", text="x" * 2001, language="DE"
    )
    assert body["errors"][0]["message"] == "at most 2000 characters"


async def test_a_lapsed_license_fails_the_announcement_and_sends_nothing(gql, rt, world):
    ann_id = await request(gql, world, GERMAN)
    async with rt.db.transaction() as s:
        await s.execute(
            update(License)
            .where(License.tenant_id == world.a.tenant_id)
            .values(revoked_at=rt.clock())
        )

    await synthesis.synthesize_announcement(rt, ann_id)

    ann = await shown(gql, world, ann_id)
    assert ann["status"] == "FAILED"
    assert ann["error"].startswith("there is no valid license")
    assert await set_commands(rt) == []


class ChangesTheTextWhileSpeaking(Engine):
    """Speaks with espeak-ng, while the admin types a new text meanwhile."""

    name = "changing"

    def __init__(self, gql: Any, world: Any) -> None:
        self.gql, self.world = gql, world

    async def synthesize(self, text: str, language: Language) -> bytes:
        await request(self.gql, self.world, "Ein neuer Text.")
        return await EspeakEngine().synthesize(text, language)


async def test_audio_for_a_text_changed_meanwhile_is_not_stored(gql, rt, world, monkeypatch):
    ann_id = await request(gql, world, GERMAN)
    monkeypatch.setattr(
        engines, "from_settings", lambda settings: ChangesTheTextWhileSpeaking(gql, world)
    )
    blobs = await blob_count(rt)

    await synthesis.synthesize_announcement(rt, ann_id)

    ann = await shown(gql, world, ann_id)
    assert (ann["status"], ann["text"]) == ("PENDING", "Ein neuer Text.")
    assert await blob_count(rt) == blobs
    assert await set_commands(rt) == []


# --------------------------------------------------------------------------- the sweep


async def test_the_sweep_finds_what_waits_too_long_and_speaks_it(gql, rt, world, clock):
    alarm = await request(gql, world, GERMAN, kind="ALARM")
    clock.advance(minutes=10)
    test = await request(gql, world, ENGLISH, "EN", kind="TEST")

    # Just asked for: its message is still on its way, so the sweep leaves it.
    assert await synthesis.pending_announcements(rt, timedelta(minutes=5)) == [alarm]
    clock.advance(minutes=10)
    assert await synthesis.pending_announcements(rt, timedelta(minutes=5)) == [alarm, test]

    assert await synthesis.synthesize_pending(rt, timedelta(minutes=5)) == 2

    assert {(await shown(gql, world, i))["status"] for i in (alarm, test)} == {"READY"}
    assert len(await set_commands(rt)) == 2
    assert await synthesis.pending_announcements(rt, timedelta(0)) == []


async def test_the_sweep_waits_longer_than_a_synthesis_may_take(rt):
    assert synthesis.sweep_age(rt) > timedelta(seconds=rt.settings.tts_timeout_seconds)
