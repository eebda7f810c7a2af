"""On a full disk the members hear the customer's message, not the standard one
(issue 14, point 10, review point 5).

The play file goes to the temporary folder, and when that is full too, it is kept in
memory; a caller's recording (mode 3) likewise. The history's note stays empty: the
message that was meant is the message that was played.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.broadcast.model import Broadcast, Member, Mode
from edge_agent.dialer.common import HELD_FOLDER, held
from edge_agent.pbx.port import UserState
from tests.agent.test_broadcast_executor import Bed, _wav, alarm, beds, make_bed
from tests.agent.test_journal_full_disk import fill, small_disk

__all__ = ["beds", "small_disk"]  # the fixtures


async def _bed_on_a_full_disk(
    tmp_path: Path, small_disk: Path, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> Bed:
    """A bed whose audio folder and temporary folder are on a full disk (the journal not)."""
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=5)
    beds.append(bed)
    custom = "brand-halle-b.wav"
    bed.cache.audio_dir.mkdir(parents=True, exist_ok=True)
    (bed.cache.audio_dir / custom).write_bytes(_wav(1.0, amplitude=3000))
    bed.cache.broadcast_groups[bed.group_id]["announcements"] = {"alarm": custom}
    bed.broadcasts.audio_dir = small_disk / "audio"
    (small_disk / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk / "tmp"))
    fill(small_disk)
    return bed


async def _played(bed: Bed, broadcast_id: str) -> tuple[Path, str | None, list[str | None]]:
    b = await bed.broadcasts.journal.get(broadcast_id)
    task = bed.broadcasts.running.get(broadcast_id)
    if task is not None:
        await asyncio.wait_for(task, 30)
    events = await bed.broadcasts.journal.events(broadcast_id)
    assert b.announcement is not None
    return Path(b.announcement), b.note, [e.outcome for e in events if e.kind == "ended"]


async def test_the_customers_announcement_is_played_from_memory_on_a_full_disk(
    tmp_path: Path, small_disk: Path, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = await _bed_on_a_full_disk(tmp_path, small_disk, beds, monkeypatch)
    broadcast_id = await bed.broadcasts.accept(alarm("job-x"))
    play, note, outcomes = await _played(bed, broadcast_id)
    assert play.parent == HELD_FOLDER
    data = held(play)
    # The customer's 1 s message, repeated, with the confirm prompt: not the standard one.
    assert data is not None and len(data) > 2 * 8000 * 2
    assert note is None or "standard message" not in note
    assert outcomes == ["confirmed"]


async def test_a_callers_recording_is_kept_in_memory_on_a_full_disk(
    tmp_path: Path, small_disk: Path, beds: list[Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    bed = await _bed_on_a_full_disk(tmp_path, small_disk, beds, monkeypatch)
    recorded = _wav(2.0, amplitude=5000)

    async def recording() -> bytes:
        return recorded

    broadcast_id = await bed.broadcasts.accept(
        alarm("job-rec", mode=Mode.ALARM_RECORDED, recording=recording)
    )
    play, note, outcomes = await _played(bed, broadcast_id)
    assert play.parent == HELD_FOLDER
    assert note is None or "recorded message" not in note
    assert outcomes == ["confirmed"]
    # The recording itself is held too, under its job's name.
    assert held(HELD_FOLDER / "recordings" / "job-rec.wav") is not None


async def test_a_resumed_broadcast_whose_held_announcement_is_gone_plays_the_standard_one(
    tmp_path: Path, beds: list[Bed]
) -> None:
    # The agent held the play file in memory (a full disk) and was restarted: the path
    # names nothing now. The standard message stands in, and the note says so.
    bed = await make_bed(tmp_path, {"Anna": UserState.LOGGED_ON}, timeout_s=5)
    beds.append(bed)
    now = datetime.now(UTC)
    lost = str(HELD_FOLDER / "play-lost.wav")
    b = Broadcast(
        "b-1",
        "job",
        "j-1",
        bed.group_id,
        2,
        now,
        now + timedelta(seconds=5),
        "running",
        announcement=lost,
    )
    await bed.broadcasts.journal.create(b, [Member(0, "m-1", "Anna", None)])
    await bed.broadcasts.resume()
    await asyncio.wait_for(bed.broadcasts.running["b-1"], 30)
    done = await bed.broadcasts.journal.get("b-1")
    assert done.note is not None and "the standard message was played" in done.note
