from __future__ import annotations

import strawberry

from api import models
from api.services import announcements, broadcast_control, broadcast_stop, directory, pbx
from schema.context import parse_id, parse_ids
from schema.enums import AnnouncementKind, BroadcastMode, Language
from schema.info import Info
from schema.pbx.types import (
    Announcement,
    AnnouncementChange,
    Command,
    PbxSettings,
    PbxSettingsChange,
    PbxSettingsInput,
)


@strawberry.type
class PbxMutation:
    @strawberry.mutation(
        description="Saves PBX settings; poll interval and timeout go to the agent."
    )
    async def update_pbx_settings(self, info: Info, input: PbxSettingsInput) -> PbxSettingsChange:
        actor = await info.context.actor()
        row, command = await pbx.update_settings(
            info.context.rt,
            actor,
            pbx.SettingsChanges(
                host=input.host,
                admin_user=input.admin_user,
                admin_password=input.admin_password,
                poll_interval_seconds=input.poll_interval_seconds,
                broadcast_timeout_seconds=input.broadcast_timeout_seconds,
            ),
        )
        return PbxSettingsChange(
            settings=PbxSettings.of(row), command=Command.of(command) if command else None
        )

    @strawberry.mutation(
        description="Has the agent sign in to the PBX with the stored credentials."
    )
    async def verify_pbx_credentials(self, info: Info) -> PbxSettingsChange:
        actor = await info.context.actor()
        row, command = await pbx.verify_credentials(info.context.rt, actor)
        return PbxSettingsChange(settings=PbxSettings.of(row), command=Command.of(command))

    @strawberry.mutation(description="Reloads the PBX directory through the agent.")
    async def sync_directory(self, info: Info) -> Command:
        actor = await info.context.actor()
        return Command.of(await directory.sync(info.context.rt, actor))

    @strawberry.mutation
    async def create_group(self, info: Info, name: str, description: str | None = None) -> Command:
        actor = await info.context.actor()
        return Command.of(await directory.create_group(info.context.rt, actor, name, description))

    @strawberry.mutation
    async def add_group_members(
        self, info: Info, group_id: strawberry.ID, user_ids: list[strawberry.ID]
    ) -> Command:
        actor = await info.context.actor()
        command = await directory.change_members(
            info.context.rt,
            actor,
            parse_id(group_id, "group"),
            parse_ids(user_ids, "PBX user"),
            True,
        )
        return Command.of(command)

    @strawberry.mutation
    async def remove_group_members(
        self, info: Info, group_id: strawberry.ID, user_ids: list[strawberry.ID]
    ) -> Command:
        actor = await info.context.actor()
        command = await directory.change_members(
            info.context.rt,
            actor,
            parse_id(group_id, "group"),
            parse_ids(user_ids, "PBX user"),
            False,
        )
        return Command.of(command)

    @strawberry.mutation(description="Turns a group into a broadcast group (creates its agent).")
    async def enable_broadcast(self, info: Info, group_id: strawberry.ID) -> Command:
        actor = await info.context.actor()
        return Command.of(
            await directory.enable_broadcast(info.context.rt, actor, parse_id(group_id, "group"))
        )

    @strawberry.mutation(description="Turns a broadcast group back (deletes its agent).")
    async def disable_broadcast(self, info: Info, group_id: strawberry.ID) -> Command:
        actor = await info.context.actor()
        return Command.of(
            await directory.disable_broadcast(info.context.rt, actor, parse_id(group_id, "group"))
        )

    @strawberry.mutation(description="Changes the agent number and/or PIN (4 to 8 digits).")
    async def update_broadcast_agent(
        self,
        info: Info,
        group_id: strawberry.ID,
        extension: str | None = None,
        pin: str | None = None,
    ) -> Command:
        actor = await info.context.actor()
        command = await directory.update_agent(
            info.context.rt, actor, parse_id(group_id, "group"), extension, pin
        )
        return Command.of(command)

    @strawberry.mutation(
        description="Starts a TEST or ALARM broadcast through the agent; its command succeeds "
        "once the agent has accepted the broadcast, with the result { broadcastId }."
    )
    async def trigger_broadcast(
        self, info: Info, group_id: strawberry.ID, mode: BroadcastMode
    ) -> Command:
        actor = await info.context.actor()
        command = await broadcast_control.trigger(
            info.context.rt, actor, parse_id(group_id, "group"), models.BroadcastMode(mode)
        )
        return Command.of(command)

    @strawberry.mutation(
        description="Stops a RUNNING broadcast through the agent (tenant admins): no new "
        "calls or retries, ringing calls end, answered ones hear that the broadcast was "
        "stopped. The history shows it CANCELLED with who, how and when once the agent "
        "reports it. Not running: BAD_USER_INPUT with reason BROADCAST_NOT_RUNNING."
    )
    async def cancel_broadcast(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> Command:
        actor = await info.context.actor()
        command = await broadcast_stop.cancel(
            info.context.rt, actor, parse_id(id, "broadcast"), reason
        )
        return Command.of(command)

    @strawberry.mutation(
        description="Quorum (1 to 1000 confirmations, null calls everyone) and repetitions "
        "(1 to 5 plays of the announcement per round) of a broadcast group."
    )
    async def update_broadcast_options(
        self,
        info: Info,
        group_id: strawberry.ID,
        *,
        quorum: int | None = None,
        repetitions: int,
    ) -> Command:
        actor = await info.context.actor()
        command = await broadcast_control.update_options(
            info.context.rt, actor, parse_id(group_id, "group"), quorum, repetitions
        )
        return Command.of(command)

    @strawberry.mutation(description="Makes an uploaded file (POST /api/uploads) the announcement.")
    async def set_announcement(
        self, info: Info, group_id: strawberry.ID, kind: AnnouncementKind, upload_id: strawberry.ID
    ) -> AnnouncementChange:
        actor = await info.context.actor()
        ann, command = await announcements.set_from_upload(
            info.context.rt,
            actor,
            parse_id(group_id, "group"),
            models.AnnouncementKind(kind),
            parse_id(upload_id, "upload"),
        )
        return AnnouncementChange(announcement=Announcement.of(ann), command=Command.of(command))

    @strawberry.mutation(
        description="Queues text-to-speech; the announcement is pending until done."
    )
    async def synthesize_announcement(
        self,
        info: Info,
        group_id: strawberry.ID,
        kind: AnnouncementKind,
        text: str,
        language: Language,
    ) -> AnnouncementChange:
        actor = await info.context.actor()
        ann = await announcements.request_synthesis(
            info.context.rt,
            actor,
            parse_id(group_id, "group"),
            models.AnnouncementKind(kind),
            text,
            models.Language(language),
        )
        return AnnouncementChange(announcement=Announcement.of(ann), command=None)
