"""SwyxWare user states through COM (`IpPbxSrv.PBXConfig`), where the agent runs on Windows.

`PBXConfig.GetUserByAddress(<group name>)` returns the group's members as `PBXUser`
objects with `UserID` and `State` (Swyx knowledge base kb2910; the states on
swyxforum.com, see docs/swyx.md). `states_from_users` turns such objects into
`UserState`s and is pure, so it is tested with fake objects on any system;
`ComStateReader` imports `pywin32` only when it first runs.

Not verified on a real SwyxWare: whether an outside COM client must call
`Initialize` first (the documentation shows it only inside call routing, with the
script's `PBXUser`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edge_agent.pbx.port import Group, UserState

log = logging.getLogger(__name__)

PROG_ID = "IpPBxSrv.PBXConfig"
_KNOWN = {s.value for s in UserState}


def _read(obj: Any, name: str) -> Any:
    """A COM property; late-bound objects may hand it out as a method instead."""
    value = getattr(obj, name)
    return value() if callable(value) else value


def states_from_users(users: Iterable[Any]) -> dict[str, UserState]:
    """`{user id: state}` of PBXUser-like objects; objects without a usable id or a
    known state (0-8) are left out, so a later SwyxWare state is "unknown", not wrong."""
    states: dict[str, UserState] = {}
    for user in users:
        try:
            user_id, raw = _read(user, "UserID"), _read(user, "State")
        except Exception as exc:  # a COM object that does not answer: skip it
            log.debug("a PBXUser without UserID/State: %s", exc)
            continue
        if user_id is None or str(user_id) == "" or isinstance(raw, bool):
            continue
        try:
            state = int(raw)
        except (TypeError, ValueError):
            continue
        if state in _KNOWN:
            states[str(user_id)] = UserState(state)
    return states


class ComStateReader:
    """The `StateReader` of `SwyxPbx` over COM: the states of every group's members."""

    def __init__(self, dispatch: Any = None) -> None:
        # `dispatch(prog_id)` makes the COM object; pywin32's by default.
        self._dispatch = dispatch
        self._config: Any = None

    def __call__(self, groups: Sequence[Group]) -> Mapping[str, UserState]:
        config = self._pbx_config()
        states: dict[str, UserState] = {}
        for group in groups:
            if group.member_ids:
                states.update(states_from_users(config.GetUserByAddress(group.name)))
        return states

    def _pbx_config(self) -> Any:
        if self._config is None:
            dispatch = self._dispatch
            if dispatch is None:
                client: Any = importlib.import_module("win32com.client")
                dispatch = client.Dispatch
            self._config = dispatch(PROG_ID)
        return self._config
