"""The `Pbx` port: directory and configuration of the customer's phone system.

Adapters (one module each, named after the system): `sim` (the SwyxWare
simulator, embedded default and test double) and later `swyx`. All methods are
coroutines; every failure is a `PbxError` subclass from `errors.py`.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from edge_agent.pbx import text

log = logging.getLogger(__name__)


class UserState(enum.IntEnum):
    """SwyxWare's user states as its PBXConfig object reports them."""

    UNAVAILABLE = 0
    LOGGED_OFF = 1
    LOGGED_ON = 2
    SPEAKING_EXTERNAL = 3
    ALERTING = 4
    SPEAKING_INTERNAL = 5
    AWAY = 6
    DO_NOT_DISTURB = 7
    BUSY = 8


@dataclass(frozen=True)
class User:
    id: str
    name: str
    extension: str | None
    description: str = ""
    state: UserState = UserState.LOGGED_OFF
    # Call-routing-only users (the broadcast agents) use no license on SwyxWare.
    callrouting_only: bool = False

    def __post_init__(self) -> None:
        # Every adapter's users pass here: PBX text is cleaned once, never refused (text.py).
        object.__setattr__(self, "name", text.clean(self.name, text.NAME_MAX))
        object.__setattr__(self, "description", text.clean(self.description, text.DESCRIPTION_MAX))
        object.__setattr__(self, "extension", text.extension(self.extension))


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    description: str = ""
    member_ids: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", text.clean(self.name, text.NAME_MAX))
        object.__setattr__(self, "description", text.clean(self.description, text.DESCRIPTION_MAX))
        members = tuple(m for m in self.member_ids if text.usable_id(m))
        object.__setattr__(self, "member_ids", members)


E = TypeVar("E", User, Group)


@dataclass(frozen=True)
class Directory:
    users: tuple[User, ...]
    groups: tuple[Group, ...]
    # Some entries could not be read (an adapter skipped them, an id was unusable or
    # there twice): what this directory lacks may still be on the PBX, so nobody may
    # take a missing entry for a deleted one (the cache keeps its previous entries, the
    # server deletes nothing; issue 14, point 1, review points 4 and 8).
    partial: bool = False

    def __post_init__(self) -> None:
        # An id is never changed (it names the entry on the PBX): one that cannot be
        # stored leaves out its entry alone, not the directory. Of two entries with one
        # id the first is kept: the second would give a member another's number.
        users, partial_users = _distinct(self.users, "users")
        groups, partial_groups = _distinct(self.groups, "groups")
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "partial", self.partial or partial_users or partial_groups)


def _distinct(entries: Sequence[E], kind: str) -> tuple[tuple[E, ...], bool]:
    """The entries with a usable id, each id once (the first); whether any was left out."""
    kept: list[E] = []
    seen: set[str] = set()
    for entry in entries:
        if not text.usable_id(entry.id):
            log.warning("the directory's %s: left out an entry without a usable id", kind)
        elif entry.id in seen:
            log.warning(
                "the directory's %s: left out a second entry with the id %r", kind, entry.id
            )
        else:
            seen.add(entry.id)
            kept.append(entry)
    return tuple(kept), len(kept) != len(entries)


class Pbx(ABC):
    # What the health report names: "sim" or "swyx".
    adapter: ClassVar[str]

    @abstractmethod
    async def login(self, host: str, admin_user: str, password: str) -> None:
        """Signs in as administrator; later calls use this login."""

    @abstractmethod
    async def reachable(self) -> bool:
        """Whether the PBX answers at all (for the health report); never raises."""

    @abstractmethod
    async def directory(self) -> Directory:
        """All users (with their states) and groups (with their members)."""

    @abstractmethod
    async def create_user(
        self,
        name: str,
        description: str,
        extension: str | None = None,
        callrouting_only: bool = False,
    ) -> User:
        """Creates a user; ``extension=None`` takes the next free internal number."""

    @abstractmethod
    async def update_user(
        self, user_id: str, *, extension: str | None = None, description: str | None = None
    ) -> User: ...

    @abstractmethod
    async def delete_user(self, user_id: str) -> None: ...

    @abstractmethod
    async def create_group(self, name: str, description: str) -> Group: ...

    @abstractmethod
    async def add_group_members(self, group_id: str, user_ids: Sequence[str]) -> Group:
        """Adds members; adding one who is a member already is no error."""

    @abstractmethod
    async def remove_group_members(self, group_id: str, user_ids: Sequence[str]) -> Group:
        """Removes members; removing one who is no member is no error."""

    @abstractmethod
    async def next_free_extension(self) -> str: ...

    @abstractmethod
    async def set_agent_pin(self, user_id: str, pin: str) -> None:
        """Stores the PIN the agent user's call routing asks for."""

    async def prepare_dialer_login(self, user: User) -> None:  # noqa: B027
        """Lets the dialer log in as `user` (the service user "Rundruf"), where the PBX
        keeps that login; the simulator has nothing to do."""
