"""The answers kept for retransmitted requests are bounded (issue 15, review).

The outside review grew the user agent's answer memory by 20,000 entries (+29 MB) with
a stranger's OPTIONS in 32 s, and to about 30 KB an entry with big requests (an answer
repeats the request's Via, From, To and Call-ID). Now a stranger fills at most a small
share of a small memory of its own, and the answers a dialog's peer may ask for again
stay (answer_cache.py).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc

from edge_agent.sip.answer_cache import OTHER_ANSWERS_PER_SOURCE, AnswerCache, server_key
from edge_agent.sip.message import Headers, Request, Response, parse, response_to
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.udp_peers import HOST, Peer, answered_call, dtmf_info, pbx, peers, ua

__all__ = ["pbx", "peers", "ua"]  # the fixtures


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def options(n: int, sender: tuple[str, int], pad: int = 0) -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP {sender[0]}:{sender[1]};branch=z9hG4bK{n:08d}"),
            ("From", "<sip:f@x>;tag=1"),
            ("To", "<sip:x@y>"),
            ("Call-ID", f"{'c' * pad}{n}"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ]
    )
    return Request("OPTIONS", f"sip:x@{HOST}", headers)


def answer(n: int, pad: int = 0) -> tuple[tuple[str, ...], Response]:
    request = options(n, (HOST, 5060), pad)
    return (request.branch, "OPTIONS"), response_to(request, 200, "OK", "t")


def test_a_source_keeps_at_most_its_share_the_oldest_go_first() -> None:
    cache = AnswerCache(max_entries=10, max_per_source=3, max_bytes=1 << 20)
    for n in range(5):
        cache.put(*answer(n), "192.0.2.1")
    cache.put(*answer(100), "192.0.2.2")
    assert len(cache) == 4
    assert [cache.get(answer(n)[0]) is not None for n in range(5)] == [False] * 2 + [True] * 3
    assert cache.get(answer(100)[0]) is not None  # the other source's answer stays


def test_the_whole_memory_is_bounded_by_count_and_by_bytes() -> None:
    cache = AnswerCache(max_entries=8, max_per_source=8, max_bytes=1 << 20)
    for n in range(20):
        cache.put(*answer(n), f"192.0.2.{n}")  # a spray of sources
    assert len(cache) == 8 and cache.get(answer(12)[0]) is not None
    assert cache.get(answer(11)[0]) is None
    small = AnswerCache(max_entries=1000, max_per_source=1000, max_bytes=64 * 1024)
    for n in range(100):
        small.put(*answer(n, pad=8000), "192.0.2.1")  # about 8.5 KB each
    assert small.bytes <= 64 * 1024 and 4 <= len(small) <= 8
    assert small.get(answer(99, pad=8000)[0]) is not None


def test_answers_are_forgotten_after_64_t1_and_one_put_again_is_the_newest() -> None:
    clock = Clock()
    cache = AnswerCache(max_entries=2, max_per_source=2, max_bytes=1 << 20, clock=clock)
    cache.put(*answer(1), "192.0.2.1")
    clock.now += 1
    cache.put(*answer(2), "192.0.2.1")
    cache.put(*answer(1), "192.0.2.1")  # a final answer replacing a 100: the newest now
    cache.put(*answer(3), "192.0.2.1")
    assert cache.get(answer(2)[0]) is None and cache.get(answer(1)[0]) is not None
    clock.now += 32.5
    cache.forget_old()
    assert len(cache) == 0 and cache.bytes == 0


async def test_a_strangers_requests_grow_no_memory_and_the_members_answers_stay(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone = Peer(phone=True)
    peers.append(phone)
    call = await answered_call(ua, phone)
    info = dtmf_info(phone, 2, "1", branch="z9hG4bKinfo2")
    phone.send(bytes(info))
    await asyncio.sleep(0.1)

    # 5,000 OPTIONS of about 1 KB from a stranger, each a new transaction, handed to the
    # user agent straight (the transport's flood limits would drop most before).
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.2", 0))
    stranger = sink.getsockname()
    datagrams = [bytes(options(n, stranger, pad=800)) for n in range(5000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, data in enumerate(datagrams):
            ua.receive(received(data), stranger, ua.transport)
            if n % 500 == 499:
                await asyncio.sleep(0)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        sink.close()
    assert grown < 512 * 1024, f"{grown / 1e6:.1f} MB kept for a stranger's 5,000 OPTIONS"
    keys = [server_key(received(data)) for data in datagrams]
    kept = [n for n, key in enumerate(keys) if ua._other_answers.get(key) is not None]
    assert kept == list(range(5000 - OTHER_ANSWERS_PER_SOURCE, 5000))  # the newest

    # The member's INFO again (its 200 was lost): the same answer, the key not taken twice.
    phone.send(bytes(info))
    await asyncio.sleep(0.2)
    answers = [r for r in phone.responses if r.cseq == (2, "INFO")]
    assert [r.status for r in answers] == [200, 200] and answers[0] == answers[1]
    assert call.digits.qsize() == 1
    await call.hang_up()


def received(data: bytes) -> Request:
    """`data` as the transport hands it up: parsed, nothing else holding on to it."""
    message = parse(data)
    assert isinstance(message, Request)
    return message
