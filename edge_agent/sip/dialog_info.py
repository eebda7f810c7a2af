"""Dialog state documents (RFC 4235, `application/dialog-info+xml`): `parse` and `bytes()`.

Pure. Only what tells whether a member is on the phone: the document's entity,
state (full or partial) and version, and per dialog its id, state and direction;
identities, targets and extension elements are skipped.

The body comes from the network, so it is parsed with care, as defusedxml would:
at most 64 KiB, UTF-8 only (RFC 4235 4.1), and no DTD: a body that declares a
document type or entities (the way to "billion laughs" and external entities) is
refused before the XML parser sees it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal, cast

from edge_agent.sip.errors import DialogInfoError

__all__ = [
    "ACTIVE",
    "CONTENT_TYPE",
    "MAX_BODY",
    "NAMESPACE",
    "DialogInfo",
    "DialogState",
    "busy",
]

CONTENT_TYPE = "application/dialog-info+xml"
NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"
MAX_BODY = 64 * 1024

DocumentState = Literal["full", "partial"]
State = Literal["trying", "proceeding", "early", "confirmed", "terminated"]
Direction = Literal["initiator", "recipient"]

_DOCUMENT_STATES = ("full", "partial")
_STATES = ("trying", "proceeding", "early", "confirmed", "terminated")
_DIRECTIONS = ("initiator", "recipient")
# A dialog in one of these states is under way: the member is dialling, ringing or talking.
ACTIVE = frozenset({"trying", "proceeding", "early", "confirmed"})
_HOSTILE = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_VERSION = re.compile(r"[0-9]{1,20}")


def _cut(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


@dataclass(frozen=True, slots=True)
class DialogState:
    """One `<dialog>` element: its id, its `<state>`, and the direction when given."""

    id: str
    state: State
    direction: Direction | None = None


@dataclass(frozen=True, slots=True)
class DialogInfo:
    """A `<dialog-info>` document: whose dialogs (`entity`), and which of them.

    `state` "full" lists every dialog of the entity; "partial" only those that changed
    since the previous `version` (RFC 4235 4.1.1).
    """

    entity: str
    state: DocumentState
    version: int
    dialogs: tuple[DialogState, ...] = ()

    @classmethod
    def parse(cls, body: bytes) -> DialogInfo:
        """The document in a NOTIFY body; raises DialogInfoError saying what is wrong."""
        root = _root(body)
        namespace, name = "", root.tag
        if name.startswith("{"):
            namespace, _, name = name[1:].partition("}")
        if name != "dialog-info" or namespace not in (NAMESPACE, ""):
            raise DialogInfoError(f"root element is {_cut(root.tag)}, not dialog-info")
        entity = (root.get("entity") or "").strip()
        if not entity:
            raise DialogInfoError("dialog-info without entity")
        state = root.get("state") or ""
        if state not in _DOCUMENT_STATES:
            raise DialogInfoError(f"bad dialog-info state {_cut(state)}")
        version = root.get("version") or ""
        if not _VERSION.fullmatch(version):
            raise DialogInfoError(f"bad dialog-info version {_cut(version)}")
        prefix = f"{{{namespace}}}" if namespace else ""
        dialogs = tuple(_dialog(e, prefix) for e in root.iterfind(f"{prefix}dialog"))
        return cls(entity, cast(DocumentState, state), int(version), dialogs)

    def __bytes__(self) -> bytes:
        """The document as we would send it: UTF-8, the RFC 4235 namespace as default."""
        root = ET.Element(
            "dialog-info",
            {
                "xmlns": NAMESPACE,
                "version": str(self.version),
                "state": self.state,
                "entity": self.entity,
            },
        )
        for dialog in self.dialogs:
            attributes = {"id": dialog.id}
            if dialog.direction is not None:
                attributes["direction"] = dialog.direction
            element = ET.SubElement(root, "dialog", attributes)
            ET.SubElement(element, "state").text = dialog.state
        text = ET.tostring(root, encoding="unicode")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode()


def _root(body: bytes) -> ET.Element:
    if len(body) > MAX_BODY:
        raise DialogInfoError(f"dialog-info of {len(body)} bytes is larger than 64 KiB")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DialogInfoError(f"dialog-info is not UTF-8 (at byte {exc.start})") from None
    hostile = _HOSTILE.search(text)
    if hostile is not None:
        what = hostile.group(1).upper()
        raise DialogInfoError(f"dialog-info with a {what} declaration is refused")
    try:
        # A str: expat takes it as UTF-8, whatever the XML declaration says.
        return ET.fromstring(text)  # noqa: S314 - size-limited, UTF-8, no DTD (checked above)
    except ET.ParseError as exc:
        raise DialogInfoError(f"dialog-info is not well-formed XML: {exc}") from None


def _dialog(element: ET.Element, prefix: str) -> DialogState:
    dialog_id = (element.get("id") or "").strip()
    if not dialog_id:
        raise DialogInfoError("dialog without id")
    state_element = element.find(f"{prefix}state")
    if state_element is None:
        raise DialogInfoError(f"dialog {_cut(dialog_id)} without state")
    state = (state_element.text or "").strip()
    if state not in _STATES:
        raise DialogInfoError(f"dialog {_cut(dialog_id)} has state {_cut(state)}")
    direction = element.get("direction")
    if direction is not None and direction not in _DIRECTIONS:
        raise DialogInfoError(f"dialog {_cut(dialog_id)} has direction {_cut(direction)}")
    return DialogState(dialog_id, cast(State, state), cast(Direction | None, direction))


def busy(info: DialogInfo) -> bool | None:
    """Whether the entity is on the phone: True when a dialog is under way (trying,
    proceeding, early or confirmed, and not also listed as terminated); False when a full
    document lists none under way; None when a partial one lists none (it names only the
    dialogs that changed: another may still be under way)."""
    ended = {d.id for d in info.dialogs if d.state == "terminated"}
    if any(d.state in ACTIVE and d.id not in ended for d in info.dialogs):
        return True
    return False if info.state == "full" else None
