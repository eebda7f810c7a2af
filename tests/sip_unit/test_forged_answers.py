"""2xx answers that match no INVITE we sent, forks, late answers and RFC 2543 requests,
against a scripted phone and a forger on loopback sockets (issue 15, points 3 and 6).

The forger once made the agent send 1,987 ACKs and 29,553 BYEs for 3,000 forged 200s:
here every ACK and BYE that leaves the agent is counted wherever it goes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest

from edge_agent.sip import invite_answers
from edge_agent.sip.call import Call, Ended
from edge_agent.sip.invite_answers import MAX_ACK_RESENDS, MAX_DIALOGS
from edge_agent.sip.message import Request, Response
from edge_agent.sip.ua import UserAgent
from tests.sip_unit.udp_peers import (
    HOST,
    Peer,
    answer_to,
    answered_call,
    dtmf_info,
    let_through,
    pbx,
    peers,
    ua,
)

__all__ = ["pbx", "peers", "ua"]  # the fixtures

OTHER_HOST = "127.0.0.2"  # the forger's second address (all of 127/8 is loopback on Linux)


def forged(
    invite: Request,
    forger: tuple[str, int],
    *,
    call_id: str | None = None,
    from_tag: str | None = None,
    to_tag: str = "phone",
    cseq: str | None = None,
    branch: str | None = None,
) -> bytes:
    """A 200 OK as a forger writes it: the INVITE's fields where told, a Contact of its own."""
    ok = answer_to(invite, to_tag, forger)
    if call_id is not None:
        ok.headers.set("Call-ID", call_id)
    if from_tag is not None:
        ok.headers.set("From", f"<sip:Rundruf@{HOST}>;tag={from_tag}")
    if cseq is not None:
        ok.headers.set("CSeq", cseq)
    branch = branch or f"z9hG4bK{secrets.token_hex(6)}"
    ok.headers.set("Via", f"SIP/2.0/UDP {HOST}:5060;branch={branch}")
    return bytes(ok)


async def flood(sender: Peer, datagrams: list[bytes]) -> None:
    for n, data in enumerate(datagrams):
        sender.send(data)
        if n % 100 == 99:
            await asyncio.sleep(0.01)  # the agent reads as fast; no buffer runs over


async def test_forged_answers_draw_no_ack_or_bye_and_the_call_goes_on(
    ua: UserAgent, pbx: Peer, peers: list[Peer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_agent.sip.invite_answers")
    phone, forger, far_forger = Peer(phone=True), Peer(), Peer(OTHER_HOST)
    peers += [phone, forger, far_forger]
    let_through(ua, forger, far_forger)
    call = await answered_call(ua, phone)
    invite, ok = phone.invite, phone.ok
    assert invite is not None and ok is not None
    forger.agent = far_forger.agent = phone.agent
    ours = invite.from_tag
    assert ours is not None
    await flood(  # 1,000 calls that never were
        forger,
        [
            forged(
                invite, forger.address, call_id=secrets.token_hex(8), from_tag="x", to_tag=str(n)
            )
            for n in range(1000)
        ],
    )
    await flood(  # 1,000 with the call's Call-ID but not our From tag
        forger,
        [forged(invite, forger.address, from_tag=f"not-{n}") for n in range(1000)],
    )
    await flood(  # 500 with our tags but a CSeq we never sent
        forger,
        [forged(invite, forger.address, cseq=f"{n + 2} INVITE") for n in range(500)],
    )
    # 500 exact copies of the phone's answer from another address: a retransmission's
    # ACK goes to the phone only, and only as often as a phone retransmits.
    await flood(far_forger, [bytes(ok)] * 500)
    await asyncio.sleep(1.0)

    for peer in (pbx, forger, far_forger):
        assert peer.requests == [], f"{len(peer.requests)} requests to {peer.address}"
    assert phone.count("BYE") == 0
    assert 1 <= phone.count("ACK") <= 1 + MAX_ACK_RESENDS
    assert all(r.call_id == invite.call_id for r in phone.requests)
    assert sum(ua.stray_answers.values()) >= 2500
    logged = [r for r in caplog.records if r.name == "edge_agent.sip.invite_answers"]
    assert len(logged) == 1, "the drops are logged at most every 10 s"

    await call.hang_up()  # the real call is unharmed: one BYE, answered
    await asyncio.sleep(0.2)
    assert phone.count("BYE") == 1
    assert ua._pending == {}


async def test_a_forked_answer_gets_one_bye_per_dialog_sent_where_the_invite_went(
    ua: UserAgent, pbx: Peer, peers: list[Peer]
) -> None:
    phone, forger = Peer(phone=True), Peer(OTHER_HOST)
    peers += [phone, forger]
    let_through(ua, forger)
    call = await answered_call(ua, phone)
    invite = phone.invite
    assert invite is not None
    forger.agent = phone.agent
    acks_before = phone.count("ACK")
    # 300 dialogs, each answered three times (a fork's 200 and its retransmissions).
    await flood(
        forger, [forged(invite, forger.address, to_tag=f"fork{n % 300}") for n in range(900)]
    )
    await asyncio.sleep(1.0)

    byes = [r for r in phone.requests if r.method == "BYE"]
    tags = [r.to_tag for r in byes]
    assert 1 <= len(byes) <= MAX_DIALOGS
    assert len(set(tags)) == len(tags), "a dialog got more than one BYE"
    assert all(tag is not None and tag.startswith("fork") for tag in tags)
    # The INVITE's Request-URI and Route, never the forged answer's Contact or Record-Route.
    assert all(r.uri == invite.uri and r.headers.get_all("Route") == [] for r in byes)
    assert phone.count("ACK") - acks_before <= MAX_DIALOGS * 3
    assert pbx.requests == [] and forger.requests == []
    await call.hang_up()
    await asyncio.sleep(0.2)
    assert [r.to_tag for r in phone.requests if r.method == "BYE"].count("phone") == 1


async def test_a_late_answer_is_acknowledged_and_hung_up_once_at_the_invites_peer(
    ua: UserAgent, pbx: Peer, peers: list[Peer]
) -> None:
    phone = Peer(phone=True, answer=False)
    peers.append(phone)
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})

    async def nothing() -> None:
        return None

    result = await asyncio.wait_for(call.start(0.3, nothing), 5)
    assert result == Ended(487, "no answer within the ring timeout")
    invite = phone.invite
    assert invite is not None
    late = bytes(answer_to(invite, "late", phone.address))
    for _ in range(5):  # the phone retransmits its answer until it sees an ACK
        phone.send(late)
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)

    late_requests = [r for r in phone.requests if r.to_tag == "late"]
    assert [r.method for r in late_requests].count("BYE") == 1
    assert 1 <= [r.method for r in late_requests].count("ACK") <= 5
    assert pbx.requests == []


async def test_an_answer_on_our_branch_but_of_another_call_is_not_taken(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone, forger = Peer(phone=True, answer=False), Peer(OTHER_HOST)
    peers += [phone, forger]
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})
    call.begin()
    await asyncio.sleep(0.2)  # ringing
    invite, tx = phone.invite, call._transaction
    assert invite is not None and tx is not None
    forger.agent = phone.agent
    forger.send(forged(invite, forger.address, call_id="other@x", branch=invite.branch))
    forger.send(forged(invite, forger.address, from_tag="not-ours", branch=invite.branch))
    await asyncio.sleep(0.3)
    assert not tx.final.done(), "a forged answer was taken for the member's"
    assert forger.requests == [] and phone.count("ACK") == 0
    assert ua.stray_answers == {"branch of another call": 2}
    await call.hang_up()
    await asyncio.wait_for(tx.final, 5)
    assert tx.final.result().status == 487


async def test_rfc_2543_infos_without_a_branch_are_each_processed(
    ua: UserAgent, peers: list[Peer]
) -> None:
    phone = Peer(phone=True)
    peers.append(phone)
    call = await answered_call(ua, phone)
    phone.send(bytes(dtmf_info(phone, 2, "9")))
    await asyncio.sleep(0.1)
    phone.send(bytes(dtmf_info(phone, 3, "1")))
    await asyncio.sleep(0.1)
    phone.send(bytes(dtmf_info(phone, 3, "1")))  # a retransmission: answered again, not taken again
    await asyncio.sleep(0.2)

    digits = [call.digits.get_nowait() for _ in range(call.digits.qsize())]
    assert digits == ["9", "1"]
    assert [(r.status, r.cseq[0]) for r in phone.responses if r.cseq[1] == "INFO"] == [
        (200, 2),
        (200, 3),
        (200, 3),
    ]
    await call.hang_up()


async def test_a_forged_late_answer_steers_neither_the_uri_nor_the_route_of_ack_and_bye(
    ua: UserAgent, pbx: Peer, peers: list[Peer]
) -> None:
    phone, forger = Peer(phone=True), Peer(OTHER_HOST)
    peers += [phone, forger]
    let_through(ua, forger)
    call = await answered_call(ua, phone)
    await call.hang_up()
    invite = phone.invite
    assert invite is not None
    # After the call: a 200 with our Call-ID, From tag and CSeq, a dialog of its own, a
    # Contact and a Record-Route of the forger's choosing (the review's c2_forged_route).
    ok = answer_to(invite, "forged", ("198.51.100.7", 5060))
    ok.headers.add("Record-Route", "<sip:victim-proxy.example;lr>")
    ok.headers.set("Via", f"SIP/2.0/UDP {HOST}:5060;branch=z9hG4bKforged")
    forger.agent = phone.agent
    forger.send(bytes(ok))
    await asyncio.sleep(0.3)

    sent = [r for r in phone.requests if r.to_tag == "forged"]
    assert [r.method for r in sent] == ["ACK", "BYE"]  # to where the INVITE went, once
    for request in sent:
        assert request.uri == invite.uri, request.uri
        assert request.headers.get_all("Route") == invite.headers.get_all("Route") == []
    assert pbx.requests == [] and forger.requests == []


async def test_two_answers_back_to_back_each_get_their_dialog(
    ua: UserAgent, pbx: Peer, peers: list[Peer]
) -> None:
    phone = Peer(phone=True, answer=False)
    peers.append(phone)
    call = Call(ua, f"sip:member@{HOST}:{phone.address[1]}", {})
    call.begin()
    async with asyncio.timeout(2):
        while phone.invite is None:  # noqa: ASYNC110 - the peer's reader is a loop callback
            await asyncio.sleep(0.01)
    invite = phone.invite
    # A forking proxy's two answers in one burst: both read in the same pass of the loop,
    # before the transaction's end (a callback of its future) has run.
    phone.send(bytes(answer_to(invite, "A", phone.address)))
    phone.send(bytes(answer_to(invite, "B", phone.address)))

    async def nothing() -> None:
        return None

    result = await asyncio.wait_for(call.start(10, nothing), 5)
    assert isinstance(result, Response) and result.to_tag == "A"
    await asyncio.sleep(0.3)
    by_dialog = sorted((r.to_tag or "", r.method) for r in phone.requests if r.method != "INVITE")
    assert by_dialog == [("A", "ACK"), ("B", "ACK"), ("B", "BYE")]
    await call.hang_up()
    await asyncio.sleep(0.2)
    assert [r.to_tag for r in phone.requests if r.method == "BYE"] == ["B", "A"]


def test_a_spray_of_sources_does_not_refill_a_spent_sources_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edge_agent.sip.invite_answers.time.monotonic", lambda: 1000.0)
    answers = invite_answers.InviteAnswers()
    spender = "192.0.2.1"
    assert all(answers._may_send(spender) for _ in range(int(invite_answers.SEND_BURST)))
    assert not answers._may_send(spender)
    for n in range(3 * invite_answers.MAX_SOURCES):  # new sources in between
        assert answers._may_send(f"10.0.{n // 256}.{n % 256}")
        assert not answers._may_send(spender), f"budget refilled after {n + 1} other sources"
    assert len(answers._budgets) <= invite_answers.MAX_SOURCES
