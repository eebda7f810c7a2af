"""Carrying out the server's commands on the PBX, each idempotent by its effect.

A handler returns the result for `completeCommand`. Every handler that can
change the directory returns the fresh `directory`, succeeded or failed, so the
server's mirror always matches the PBX.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_agent.cache import LocalCache, directory_json
from edge_agent.error_text import describe
from edge_agent.errors import AgentError
from edge_agent.files import write_atomic
from edge_agent.health_answer import LANGUAGES
from edge_agent.ledger import Outcome
from edge_agent.pbx import text
from edge_agent.pbx.errors import PbxError, PbxNotLoggedIn
from edge_agent.pbx.port import Directory, Group, Pbx, User
from edge_agent.server import Server
from edge_agent.settings import VERSION

log = logging.getLogger(__name__)

# Names the PBX shows, from the product description: never change them.
SERVICE_USER = "Rundruf"
SERVICE_USER_DESCRIPTION = "agenos Rundruf-Manager: Benutzer für Rundrufe. Bitte nicht ändern."
AGENT_DESCRIPTION = "agenos Rundruf-Agent. Bitte nicht ändern."
ADMIN_GROUP = "agenosRundrufGruppe"
ADMIN_GROUP_DESCRIPTION = "agenos Rundruf"

Handler = Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]


class Commands:
    def __init__(self, pbx: Pbx, cache: LocalCache, server: Server) -> None:
        self.pbx = pbx
        self.cache = cache
        self.server = server
        # Set when something the health report shows changed: report now, not later.
        self.health_changed = asyncio.Event()
        self.handlers: dict[str, Handler] = {
            "verifyPbxCredentials": self.verify_credentials,
            "syncDirectory": self.sync_directory,
            "createGroup": self.create_group,
            "addGroupMembers": self.add_members,
            "removeGroupMembers": self.remove_members,
            "enableBroadcast": self.enable_broadcast,
            "disableBroadcast": self.disable_broadcast,
            "updateBroadcastAgent": self.update_agent,
            "setAnnouncement": self.set_announcement,
            "updateSettings": self.update_settings,
            "updateBroadcastOptions": self.update_options,
        }

    async def run(self, kind: str, payload: dict[str, Any], secrets: dict[str, Any]) -> Outcome:
        handler = self.handlers.get(kind)
        if handler is None:
            return Outcome(
                ok=False,
                result={},
                error=f"this agent (version {VERSION}) does not know the command {kind!r}; "
                "update the Rundruf Manager Service",
            )
        try:
            try:
                result = await handler(payload, secrets)
            except PbxNotLoggedIn:
                if kind == "verifyPbxCredentials":
                    raise
                await self.ensure_login()  # after a restart: sign in again, then retry once
                result = await handler(payload, secrets)
            return Outcome(ok=True, result=result, error=None)
        except AgentError as exc:
            return Outcome(ok=False, result={}, error=str(exc))
        except PbxError as exc:
            log.warning("command %s failed on the PBX: %s", kind, exc.message)
            return Outcome(ok=False, result=await self._directory_if_possible(), error=exc.message)
        except (KeyError, TypeError, ValueError) as exc:
            # Fields, not the repr: it can hold the values checked, secrets among them.
            why = describe(exc, hide=secrets.values())
            if _raised_here(exc):  # a handler reading its payload: the command's fault
                return Outcome(ok=False, result={}, error=f"malformed {kind} command: {why}")
            # Raised deeper (a file, a library): the agent's trouble, not a bad command;
            # the PBX may have changed before it, so the directory goes along.
            log.exception("command %s failed in the agent", kind)
            error = f"the agent failed running {kind}: {why}"
            return Outcome(ok=False, result=await self._directory_if_possible(), error=error)

    async def fresh_directory(self) -> dict[str, Any]:
        """``{"directory": …}`` as the PBX has it now, or ``{}`` if it cannot say."""
        return await self._directory_if_possible()

    async def _directory_if_possible(self) -> dict[str, Any]:
        try:
            return {"directory": await self._directory()}
        except PbxError:
            return {}

    async def _directory(self) -> dict[str, Any]:
        directory = await self.pbx.directory()
        self.cache.set_directory(directory)
        self.cache.save()
        self.health_changed.set()
        return directory_json(directory)

    async def ensure_login(self) -> None:
        """Signs in with the stored login, if there is one (after a restart)."""
        login = self.cache.pbx_login
        if login is None:
            raise PbxNotLoggedIn("the PBX credentials have not been verified yet")
        await self.pbx.login(login["host"], login["adminUser"], login["password"])

    async def verify_credentials(
        self, payload: dict[str, Any], secrets: dict[str, Any]
    ) -> dict[str, Any]:
        host, user, password = payload["host"], payload["adminUser"], secrets["adminPassword"]
        await self.pbx.login(host, user, password)
        self.cache.set_pbx_login(host, user, password)
        self.cache.save()
        directory = await self.pbx.directory()
        service = _by_description(directory, SERVICE_USER_DESCRIPTION)
        if service is None:
            service = await self.pbx.create_user(SERVICE_USER, SERVICE_USER_DESCRIPTION)
        group = await self._admin_group(directory)
        await self.pbx.add_group_members(group.id, [service.id])
        await self.pbx.prepare_dialer_login(service)
        return {"serviceUserId": service.id, "directory": await self._directory()}

    async def _admin_group(self, directory: Directory) -> Group:
        for group in directory.groups:
            if group.name == ADMIN_GROUP:
                return group
        return await self.pbx.create_group(ADMIN_GROUP, ADMIN_GROUP_DESCRIPTION)

    async def sync_directory(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        return {"directory": await self._directory()}

    async def create_group(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        name = str(payload["name"])
        existing = next((g for g in (await self.pbx.directory()).groups if g.name == name), None)
        group = existing or await self.pbx.create_group(name, str(payload.get("description") or ""))
        return {"groupId": group.id, "directory": await self._directory()}

    async def add_members(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        await self.pbx.add_group_members(str(payload["groupPbxId"]), payload["userPbxIds"])
        return {"directory": await self._directory()}

    async def remove_members(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        await self.pbx.remove_group_members(str(payload["groupPbxId"]), payload["userPbxIds"])
        return {"directory": await self._directory()}

    async def enable_broadcast(
        self, payload: dict[str, Any], secrets: dict[str, Any]
    ) -> dict[str, Any]:
        group_id = str(payload["groupPbxId"])
        # Cut as the directory cuts every name it reads (pbx/text.py): "Rundruf " and a
        # 200-character group name would never be found again, and a retry would make a
        # second agent (issue 14, point 1, review point 7).
        agent_name = text.clean(str(payload["agentName"]), text.NAME_MAX)
        directory = await self.pbx.directory()
        if not any(g.id == group_id for g in directory.groups):
            raise KeyError(f"group {group_id} is not on the PBX")
        # Found again after a crash half-way: the same name is the same agent.
        agent = next((u for u in directory.users if u.name == agent_name), None)
        if agent is None:
            agent = await self.pbx.create_user(agent_name, AGENT_DESCRIPTION, callrouting_only=True)
        # The installer pastes the call-routing script with this id (docs/swyx.md).
        log.info(
            "broadcast agent %r is PBX user id %s, number %s", agent.name, agent.id, agent.extension
        )
        await self.pbx.set_agent_pin(agent.id, str(secrets["pin"]))
        await self.pbx.add_group_members((await self._admin_group(directory)).id, [agent.id])
        before = self.cache.broadcast_groups.get(group_id, {})
        self.cache.broadcast_groups[group_id] = {
            **before,
            "agentUserId": agent.id,
            "extension": agent.extension,
            "pin": str(secrets["pin"]),
            "announcements": before.get("announcements", {}),
        }
        self.cache.save()
        return {
            "agentUserId": agent.id,
            "extension": agent.extension,
            "directory": await self._directory(),
        }

    async def disable_broadcast(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        group_id = str(payload["groupPbxId"])
        cached = self.cache.broadcast_groups.get(group_id, {})
        agent_id = payload.get("agentPbxId") or cached.get("agentUserId")
        if agent_id and any(u.id == agent_id for u in (await self.pbx.directory()).users):
            await self.pbx.delete_user(str(agent_id))
        self.cache.broadcast_groups.pop(group_id, None)
        self.cache.save()
        return {"directory": await self._directory()}

    async def update_agent(
        self, payload: dict[str, Any], secrets: dict[str, Any]
    ) -> dict[str, Any]:
        group_id = str(payload["groupPbxId"])
        cached = self.cache.broadcast_groups.get(group_id)
        if cached is None:
            raise KeyError(f"group {group_id} is not a broadcast group on this agent")
        agent: User | None = None
        if payload.get("extension"):
            agent = await self.pbx.update_user(
                cached["agentUserId"], extension=payload["extension"]
            )
            cached["extension"] = agent.extension
        if "pin" in secrets:
            await self.pbx.set_agent_pin(cached["agentUserId"], str(secrets["pin"]))
            cached["pin"] = str(secrets["pin"])
        self.cache.save()
        return {"extension": cached["extension"], "directory": await self._directory()}

    async def set_announcement(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        group_id, kind = str(payload["groupPbxId"]), str(payload["kind"])
        sha256 = str(payload["sha256"])
        data = await self.server.download_audio(str(payload["audioId"]), sha256)
        path = self.cache.audio_dir / f"{sha256}.wav"
        write_atomic(path, data)
        group = self.cache.broadcast_groups.setdefault(group_id, {})
        group.setdefault("announcements", {})[kind] = {"sha256": sha256, "file": path.name}
        self.cache.save()
        return {"cached": True, "bytes": len(data)}

    async def update_options(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        group_id = str(payload["groupPbxId"])
        quorum, repetitions = payload.get("quorum"), int(payload["repetitions"])
        if quorum is not None and (not isinstance(quorum, int) or quorum < 1):
            raise ValueError(f"quorum {quorum!r} is no positive number")
        if not 1 <= repetitions <= 5:
            raise ValueError(f"repetitions {repetitions} is not 1 to 5")
        group = self.cache.broadcast_groups.get(group_id)
        if group is None:
            raise KeyError(f"group {group_id} is not a broadcast group on this agent")
        group["quorum"], group["repetitions"] = quorum, repetitions
        self.cache.save()
        return {"quorum": quorum, "repetitions": repetitions}

    async def update_settings(self, payload: dict[str, Any], _: dict[str, Any]) -> dict[str, Any]:
        language = payload.get("language")
        if language is not None and language not in LANGUAGES:
            raise ValueError(f"language must be de or en, not {str(language)[:8]!r}")
        self.cache.update_settings(payload)
        self.cache.save()
        self.health_changed.set()
        return {"settings": self.cache.data["settings"]}


_PACKAGE = Path(__file__).resolve().parent
# Where the handlers live: an error raised in one of them (reading the payload, or in a
# function of the standard library it called on the payload) is the command's fault.
_HANDLER_MODULES = {_PACKAGE / "commands.py", _PACKAGE / "service.py"}


def _raised_here(exc: BaseException) -> bool:
    """Whether the innermost frame of the agent's own code in `exc`'s trace is a handler's
    (a payload read badly), not a module a handler called (a file, the PBX adapter)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_PACKAGE):
            return path in _HANDLER_MODULES
    return False


def _by_description(directory: Directory, description: str) -> User | None:
    return next((u for u in directory.users if u.description == description), None)
