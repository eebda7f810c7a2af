"""Answers to requests we received, kept for the requests' retransmissions (RFC 3261 17.2).

A retransmitted request gets the answer it got the first time, for `MEMORY_S` (64 x
T1, when a client has stopped retransmitting). Before, that memory had no bound but
its age: a stranger's 20,000 OPTIONS in 32 s were 20,000 answers (+29 MB), and big
requests made each answer about 30 KB, since an answer repeats the request's Via,
From, To and Call-ID (issue 15, review). Now a cache holds at most `max_entries`
answers and `max_bytes` of them, and at most `max_per_source` from one host; the
oldest go first. The user agent keeps two (docs/decisions/sip-dialog-match.md): one
for answers in its dialogs, which only a dialog's peer can fill, and a small one for
everything else, which anyone can fill, so that no stranger pushes out the answers
a PBX's retransmissions need.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from edge_agent.sip.message import MAGIC_COOKIE, Request, Response

MEMORY_S = 32.0  # 64 x T1
# What an entry costs beyond its text: the key, the Response and its header lists.
ENTRY_OVERHEAD = 512
# Answers in our dialogs (only a dialog's peer adds to these: 500 calls' INFOs, BYEs
# and re-INVITEs fit many times over) ...
DIALOG_ANSWERS = 8192
DIALOG_ANSWER_BYTES = 16 * 1024 * 1024
# ... and to anything else (OPTIONS, stray BYEs, INVITEs refused), which anyone can send.
OTHER_ANSWERS = 512
OTHER_ANSWERS_PER_SOURCE = 32
OTHER_ANSWER_BYTES = 1024 * 1024


@dataclass(slots=True)
class _Entry:
    at: float
    answer: Response
    host: str
    size: int


def size_of(key: tuple[str, ...], answer: Response) -> int:
    """About what an entry holds in memory, in bytes."""
    text = sum(len(name) + len(value) for name, value in answer.headers.items())
    return ENTRY_OVERHEAD + text + len(answer.body) + sum(len(part) for part in key)


class AnswerCache:
    """The answers of the last `memory_s` seconds, by server transaction key, bounded."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_per_source: int,
        max_bytes: int,
        memory_s: float = MEMORY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_per_source = max_per_source
        self.max_bytes = max_bytes
        self.memory_s = memory_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # oldest first
        self._by_source: dict[str, OrderedDict[Hashable, None]] = {}
        self.bytes = 0
        self.evicted = 0  # dropped before their time, for a bound

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, ...]) -> Response | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.answer

    def put(self, key: tuple[str, ...], answer: Response, host: str) -> None:
        """Keeps `answer` for `key` (replacing an older one), from `host`'s request."""
        if key in self._entries:
            self._remove(key)
        size = size_of(key, answer)
        if size > self.max_bytes:
            return
        mine = self._by_source.get(host)
        while mine and len(mine) >= self.max_per_source:
            self._remove(next(iter(mine)))
            self.evicted += 1
        while self._entries and (
            len(self._entries) >= self.max_entries or self.bytes + size > self.max_bytes
        ):
            self._remove(next(iter(self._entries)))
            self.evicted += 1
        self._entries[key] = _Entry(self._clock(), answer, host, size)
        self._by_source.setdefault(host, OrderedDict())[key] = None
        self.bytes += size

    def forget_old(self) -> None:
        cutoff = self._clock() - self.memory_s
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.at >= cutoff:
                break
            self._remove(key)

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        mine = self._by_source[entry.host]
        del mine[key]
        if not mine:
            del self._by_source[entry.host]


def for_dialogs() -> AnswerCache:
    """The memory of answers in our dialogs."""
    return AnswerCache(
        max_entries=DIALOG_ANSWERS, max_per_source=DIALOG_ANSWERS, max_bytes=DIALOG_ANSWER_BYTES
    )


def for_others() -> AnswerCache:
    """The memory of answers to anything else."""
    return AnswerCache(
        max_entries=OTHER_ANSWERS,
        max_per_source=OTHER_ANSWERS_PER_SOURCE,
        max_bytes=OTHER_ANSWER_BYTES,
    )


def server_key(request: Request) -> tuple[str, ...]:
    """What tells a request's retransmission from a new request (RFC 3261 17.2.3).

    A branch with the magic cookie is unique to its transaction. Without it (an RFC
    2543 peer) the branch says nothing: such a peer's second INFO carries the same Via
    as its first, so Request-URI, tags, Call-ID, CSeq and top Via decide.
    """
    branch = request.branch
    if branch.startswith(MAGIC_COOKIE) and branch != MAGIC_COOKIE:  # a bare cookie names
        # no transaction (RFC 4475 3.2.1 `badbranch`). Branch, sent-by and method match
        # (17.2.3): two peers may well pick the same branch; the top Via holds sent-by.
        return (branch, request.method, request.headers.get("Via") or "")
    return (
        request.method,
        request.uri,
        request.to_tag or "",
        request.from_tag or "",
        request.call_id,
        request.headers.get("CSeq") or "",
        request.headers.get("Via") or "",
    )
