"""The scheduler's lease on real Redis (and as a file lock), and its pace."""

from __future__ import annotations

from pathlib import Path

import redis

from workers.lease import FileLease, RedisLease
from workers.scheduler import Job, Scheduler


def _scheduler(lease, sent: list[str], clock=None) -> Scheduler:
    jobs = [
        Job("mail_sweep", 10, lambda: sent.append("mail_sweep")),
        Job("watchdog_sweep", 60, lambda: sent.append("watchdog_sweep")),
    ]
    if clock is None:
        return Scheduler(lease, jobs, tick=1)
    return Scheduler(lease, jobs, tick=1, clock=clock)


def test_of_two_schedulers_only_the_lease_holder_sends(redis_client: redis.Redis, namespace: str):
    key = f"{namespace}:scheduler-lease"
    first_sent: list[str] = []
    second_sent: list[str] = []
    first = _scheduler(RedisLease(redis_client, key, 15), first_sent)
    second = _scheduler(RedisLease(redis_client, key, 15), second_sent)

    for _ in range(5):
        first.tick()
        second.tick()

    assert first_sent == ["mail_sweep", "watchdog_sweep"]
    assert second_sent == []
    assert (first.leader, second.leader) == (True, False)
    assert redis_client.pttl(key) > 0


def test_a_stopped_scheduler_hands_over_at_once(redis_client: redis.Redis, namespace: str):
    key = f"{namespace}:scheduler-lease"
    first_lease = RedisLease(redis_client, key, 15)
    second_sent: list[str] = []
    second = _scheduler(RedisLease(redis_client, key, 15), second_sent)
    assert first_lease.hold()
    assert second.tick() == []

    first_lease.release()

    assert second.tick() == ["mail_sweep", "watchdog_sweep"]


def test_a_holder_that_stalled_past_its_lease_cannot_renew_the_new_one(
    redis_client: redis.Redis, namespace: str
):
    key = f"{namespace}:scheduler-lease"
    stalled = RedisLease(redis_client, key, 15)
    other = RedisLease(redis_client, key, 15)
    assert stalled.hold()
    redis_client.delete(key)  # as if its TTL ran out while it was stuck

    assert other.hold()
    assert not stalled.hold()
    assert redis_client.get(key) == other.holder.encode()
    stalled.release()  # not its lease any more: nothing happens
    assert redis_client.get(key) == other.holder.encode()


def test_an_unreachable_redis_means_not_holding(namespace: str):
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        assert RedisLease(client, f"{namespace}:lease", 15).hold() is False
    finally:
        client.close()


def test_the_file_lease_has_one_holder_until_it_is_released(tmp_path: Path):
    first = FileLease(tmp_path / "scheduler.lock")
    second = FileLease(tmp_path / "scheduler.lock")

    assert first.hold()
    assert first.hold()
    assert not second.hold()
    first.release()
    assert second.hold()
    second.release()


class _Always:
    holder = "test"

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        return None


def test_each_job_is_sent_at_its_own_pace():
    now = [0.0]
    sent: list[str] = []
    scheduler = _scheduler(_Always(), sent, clock=lambda: now[0])

    for second in range(0, 121):
        now[0] = float(second)
        scheduler.tick()

    assert sent.count("mail_sweep") == 13  # at 0, 10, …, 120
    assert sent.count("watchdog_sweep") == 3  # at 0, 60, 120


def test_a_job_that_cannot_be_sent_does_not_stop_the_others():
    sent: list[str] = []

    def broken() -> None:
        raise redis.ConnectionError("down")

    scheduler = Scheduler(
        _Always(), [Job("broken", 10, broken), Job("ok", 10, lambda: sent.append("ok"))], tick=1
    )

    assert scheduler.tick() == ["ok"]
