"""What the web tests send as the agent to report a broadcast: the mutation and its
call events."""

from __future__ import annotations

REPORT = "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }"


def report_event(seq: int, member: str, kind: str, at: str, **fields: object) -> dict[str, object]:
    """A call event of `member` (its PBX id and name; no extension) in its first attempt."""
    return {
        "seq": seq,
        "memberPbxId": member,
        "memberName": member,
        "memberExtension": None,
        "attemptNo": 1,
        "kind": kind,
        "at": at,
        **fields,
    }
