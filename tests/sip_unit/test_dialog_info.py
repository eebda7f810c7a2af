"""Dialog state documents (RFC 4235) as PBXes send them: parse, round trip, busy or idle,
and the exact errors for malformed and hostile bodies."""

from __future__ import annotations

import pytest

from edge_agent.sip.dialog_info import MAX_BODY, DialogInfo, DialogState, busy
from edge_agent.sip.errors import DialogInfoError, SipError

# Asterisk's res_pjsip_dialog_info_body_generator (pj_xml_print, one-space indents): one
# dialog named after the extension; terminated when idle, early when ringing, confirmed
# when in use (and on hold, with a +sip.rendering=no target).
ASTERISK_IN_USE = b"""<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" \
entity="sip:201@pbx.example.com">
 <dialog id="201">
  <state>confirmed</state>
 </dialog>
</dialog-info>
"""
ASTERISK_IDLE = ASTERISK_IN_USE.replace(b"confirmed", b"terminated")
ASTERISK_RINGING = ASTERISK_IN_USE.replace(b"confirmed", b"early")
ASTERISK_ON_HOLD = b"""<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="7" state="full" \
entity="sip:201@pbx.example.com">
 <dialog id="201">
  <state>confirmed</state>
  <local>
   <target uri="sip:201@pbx.example.com">
    <param pname="+sip.rendering" pvalue="no"/>
   </target>
  </local>
 </dialog>
</dialog-info>
"""
# After RFC 4235's examples: a caller's dialog while it is set up, and a confirmed call
# with identities, targets and duration (skipped), in a partial notification.
RFC_TRYING = b"""<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
             version="0" state="full"
             entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710"
          local-tag="1928301774" direction="initiator">
    <state>trying</state>
  </dialog>
</dialog-info>
"""
RFC_CONFIRMED_PARTIAL = b"""<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
             version="1" state="partial"
             entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710"
          local-tag="1928301774" remote-tag="456887766"
          direction="initiator">
    <state>confirmed</state>
    <duration>274</duration>
    <local>
      <identity display="Alice">sip:alice@example.com</identity>
      <target uri="sip:alice@pc33.example.com">
        <param pname="isfocus" pvalue="true"/>
      </target>
    </local>
    <remote>
      <identity display="Bob">sip:bob@example.org</identity>
      <target uri="sip:bobster@phone21.example.org"/>
    </remote>
  </dialog>
</dialog-info>
"""
# A busy answer that ended the dialog, and a new one ringing in (RFC 4235 4.1.6.2).
RFC_REJECTED_AND_RINGING = b"""<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
             version="4" state="full" entity="sip:bob@example.org">
  <dialog id="zxcvbnm3" direction="recipient">
    <state event="rejected" code="486">terminated</state>
  </dialog>
  <dialog id="sfhjsjk12" direction="recipient">
    <state>early</state>
  </dialog>
</dialog-info>
"""
# No dialogs at all: the entity is idle (RFC 4235 4.1.2: a full document lists every one).
EMPTY_FULL = (
    b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full"'
    b' entity="sip:202@pbx.example.com"/>'
)


def test_it_reads_asterisks_in_use_document() -> None:
    info = DialogInfo.parse(ASTERISK_IN_USE)
    assert info == DialogInfo(
        "sip:201@pbx.example.com", "full", 3, (DialogState("201", "confirmed"),)
    )
    assert busy(info) is True


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ASTERISK_IN_USE, True),
        (ASTERISK_RINGING, True),
        (ASTERISK_ON_HOLD, True),
        (ASTERISK_IDLE, False),
        (RFC_TRYING, True),
        (RFC_CONFIRMED_PARTIAL, True),
        (RFC_REJECTED_AND_RINGING, True),
        (EMPTY_FULL, False),
    ],
    ids=["in-use", "ringing", "on-hold", "idle", "trying", "partial", "rejected+ringing", "empty"],
)
def test_it_tells_busy_from_idle(body: bytes, expected: bool) -> None:
    assert busy(DialogInfo.parse(body)) is expected


def test_it_reads_the_rfc_examples_attributes_and_skips_the_rest() -> None:
    info = DialogInfo.parse(RFC_CONFIRMED_PARTIAL)
    assert (info.entity, info.state, info.version) == ("sip:alice@example.com", "partial", 1)
    assert info.dialogs == (DialogState("as7d900as8", "confirmed", "initiator"),)
    states = [d.state for d in DialogInfo.parse(RFC_REJECTED_AND_RINGING).dialogs]
    assert states == ["terminated", "early"]


def test_a_partial_document_without_a_dialog_under_way_says_nothing() -> None:
    info = DialogInfo("sip:alice@example.com", "partial", 5, (DialogState("a", "terminated"),))
    assert busy(info) is None
    assert busy(DialogInfo("sip:alice@example.com", "partial", 5)) is None


def test_a_dialog_listed_as_terminated_too_is_over() -> None:
    dialogs = (DialogState("a", "confirmed"), DialogState("a", "terminated"))
    assert busy(DialogInfo("sip:alice@example.com", "full", 2, dialogs)) is False


@pytest.mark.parametrize(
    "body", [ASTERISK_IN_USE, ASTERISK_IDLE, RFC_TRYING, RFC_REJECTED_AND_RINGING, EMPTY_FULL]
)
def test_a_document_round_trips(body: bytes) -> None:
    info = DialogInfo.parse(body)
    assert DialogInfo.parse(bytes(info)) == info


def test_it_writes_utf8_with_the_namespace_and_escapes_the_entity() -> None:
    info = DialogInfo('sip:"o&o"@example.com', "full", 0, (DialogState("1", "early", "recipient"),))
    data = bytes(info)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="urn:')
    assert b"&amp;" in data and b"&quot;" in data
    assert DialogInfo.parse(data) == info


def test_a_bom_and_a_document_without_the_namespace_are_read() -> None:
    assert busy(DialogInfo.parse(b"\xef\xbb\xbf" + ASTERISK_IN_USE)) is True
    plain = ASTERISK_IN_USE.replace(b' xmlns="urn:ietf:params:xml:ns:dialog-info"', b"")
    assert busy(DialogInfo.parse(plain)) is True


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full"
 entity="sip:a@b"><dialog id="&lol3;"><state>confirmed</state></dialog></dialog-info>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE dialog-info [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full"
 entity="&xxe;"/>
"""
NS = b'xmlns="urn:ietf:params:xml:ns:dialog-info"'
MALFORMED = {
    "billion laughs": (BILLION_LAUGHS, "dialog-info with a DOCTYPE declaration is refused"),
    "external entity": (EXTERNAL_ENTITY, "dialog-info with a DOCTYPE declaration is refused"),
    "lower-case doctype": (
        b"<!doctype x><x/>",
        "dialog-info with a DOCTYPE declaration is refused",
    ),
    "entity alone": (b'<!ENTITY a "b"><x/>', "dialog-info with a ENTITY declaration is refused"),
    "undefined entity": (
        b"<dialog-info " + NS + b' version="0" state="full" entity="&xxe;"/>',
        "dialog-info is not well-formed XML: undefined entity: line 1, column 0",
    ),
    "too large": (
        b" " * MAX_BODY + b"<x/>",
        f"dialog-info of {MAX_BODY + 4} bytes is larger than 64 KiB",
    ),
    "latin-1": (
        b'<?xml version="1.0" encoding="ISO-8859-1"?><dialog-info entity="sip:j\xf6rg@x"/>',
        "dialog-info is not UTF-8 (at byte 69)",
    ),
    "empty": (b"", "dialog-info is not well-formed XML: no element found: line 1, column 0"),
    "truncated": (
        ASTERISK_IN_USE[: ASTERISK_IN_USE.index(b"  <state>")],
        "dialog-info is not well-formed XML: no element found: line 4, column 0",
    ),
    "mismatched tag": (
        b"<dialog-info " + NS + b' version="0" state="full" entity="x"><dialog></dialog-info>',
        "dialog-info is not well-formed XML: mismatched tag: line 1, column 102",
    ),
    "other root": (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>',
        "root element is '{urn:ietf:params:xml:ns:pidf}presence', not dialog-info",
    ),
    "other namespace": (
        b'<dialog-info xmlns="urn:example" version="0" state="full" entity="x"/>',
        "root element is '{urn:example}dialog-info', not dialog-info",
    ),
    "no entity": (
        b"<dialog-info " + NS + b' version="0" state="full"/>',
        "dialog-info without entity",
    ),
    "bad state": (
        b"<dialog-info " + NS + b' version="0" state="complete" entity="x"/>',
        "bad dialog-info state 'complete'",
    ),
    "negative version": (
        b"<dialog-info " + NS + b' version="-1" state="full" entity="x"/>',
        "bad dialog-info version '-1'",
    ),
    "huge version": (
        b"<dialog-info " + NS + b' version="' + b"9" * 5000 + b'" state="full" entity="x"/>',
        "bad dialog-info version '9999999999999999999999999999999999999...'",
    ),
    "dialog without id": (
        b"<dialog-info " + NS + b' version="0" state="full" entity="x">'
        b"<dialog><state>early</state></dialog></dialog-info>",
        "dialog without id",
    ),
    "dialog without state": (
        b"<dialog-info " + NS + b' version="0" state="full" entity="x">'
        b'<dialog id="7"/></dialog-info>',
        "dialog '7' without state",
    ),
    "unknown dialog state": (
        b"<dialog-info " + NS + b' version="0" state="full" entity="x">'
        b'<dialog id="7"><state>Ringing</state></dialog></dialog-info>',
        "dialog '7' has state 'Ringing'",
    ),
    "bad direction": (
        b"<dialog-info " + NS + b' version="0" state="full" entity="x">'
        b'<dialog id="7" direction="outbound"><state>early</state></dialog></dialog-info>',
        "dialog '7' has direction 'outbound'",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_or_hostile_body_is_refused_with_the_exact_reason(name: str) -> None:
    body, message = MALFORMED[name]
    with pytest.raises(DialogInfoError) as raised:
        DialogInfo.parse(body)
    assert str(raised.value) == message
    assert isinstance(raised.value, SipError) and isinstance(raised.value, ValueError)
