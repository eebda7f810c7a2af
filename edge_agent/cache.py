"""What the agent keeps locally so that alarms run while the server is away.

One JSON file (mode 0600), rewritten atomically on each change: tenant
settings, broadcast groups (agent user, number, PIN), announcement files, the
last directory, and the PBX login that `verifyPbxCredentials` proved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.files import read_json, write_json
from edge_agent.health_answer import LANGUAGES
from edge_agent.pbx.port import Directory, UserState


class LocalCache:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "cache.json"
        self.audio_dir = state_dir / "audio"
        self.data: dict[str, Any] = read_json(self.path, {})
        self.data.setdefault(
            "settings", {"pollIntervalSeconds": 60, "broadcastTimeoutSeconds": 300}
        )
        self.data.setdefault("broadcastGroups", {})
        self.data.setdefault("directory", {"users": [], "groups": []})

    def save(self) -> None:
        write_json(self.path, self.data)

    @property
    def pbx_login(self) -> dict[str, str] | None:
        login = self.data.get("pbxLogin")
        return dict(login) if isinstance(login, dict) else None

    def set_pbx_login(self, host: str, admin_user: str, password: str) -> None:
        self.data["pbxLogin"] = {"host": host, "adminUser": admin_user, "password": password}

    @property
    def poll_interval(self) -> float:
        return float(self.data["settings"].get("pollIntervalSeconds", 60))

    @property
    def language(self) -> str:
        """The tenant's language ("de" or "en"): the agent's own trigger-call line speaks it."""
        return str(self.data["settings"].get("language", "de"))

    def update_settings(self, values: dict[str, Any]) -> None:
        """Takes the settings the agent knows; a value of the wrong kind is left out."""
        for key in ("pollIntervalSeconds", "broadcastTimeoutSeconds"):
            if isinstance(values.get(key), int):
                self.data["settings"][key] = values[key]
        if values.get("language") in LANGUAGES:
            self.data["settings"]["language"] = values["language"]

    def follow(self, poll_interval_seconds: int, language: str | None) -> bool:
        """Takes what the heartbeat's answer says; True when something changed (to save)."""
        changes: dict[str, Any] = {}
        if poll_interval_seconds != int(self.poll_interval):
            changes["pollIntervalSeconds"] = poll_interval_seconds
        if language is not None and language != self.language:
            changes["language"] = language
        self.update_settings(changes)
        return bool(changes)

    @property
    def broadcast_groups(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = self.data["broadcastGroups"]
        return groups

    def set_directory(self, directory: Directory) -> None:
        """The directory as the PBX has it now; of a partial one (entries could not be
        read), the previous entries it lacks are kept: an unreadable group is not one
        without members, and its alarm must still call them."""
        fresh = directory_json(directory)
        if directory.partial:
            previous = self.data["directory"]
            for kind in ("users", "groups"):
                have = {entry["id"] for entry in fresh[kind]}
                fresh[kind] += [e for e in previous.get(kind, []) if e.get("id") not in have]
        self.data["directory"] = fresh

    def participant_count(self) -> int:
        """Distinct members of broadcast groups (what the license counts)."""
        broadcast = set(self.broadcast_groups)
        members = {
            member
            for group in self.data["directory"]["groups"]
            if group["id"] in broadcast
            for member in group["memberIds"]
        }
        return len(members)


def directory_json(directory: Directory) -> dict[str, Any]:
    """The wire shape the server's mirror expects."""
    return {
        "users": [
            {
                "id": u.id,
                "name": u.name,
                "extension": u.extension,
                "description": u.description,
                "state": int(UserState(u.state)),
                "callroutingOnly": u.callrouting_only,
            }
            for u in directory.users
        ],
        "groups": [
            {
                "id": g.id,
                "name": g.name,
                "description": g.description,
                "memberIds": list(g.member_ids),
            }
            for g in directory.groups
        ],
        # Only when true: the server then deletes nothing this directory lacks.
        **({"partial": True} if directory.partial else {}),
    }
