"""Authorization of every GraphQL operation, driven by the schema.

`CASES` holds one case per root field of the schema. The first test compares
the two, so an operation added later without an authorization case fails the
suite. Each case says what kind of operation it is; the parametrized tests
below then check, for every case of a kind, who is refused and that a refused
request changed nothing:

* an outsider (tenant B's administrator) reaching for tenant A's objects gets
  NOT_FOUND or FORBIDDEN, sees none of tenant A's data, and changes nothing;
  the same request on tenant B's own objects works (so the refusal is about
  the tenant, not about a broken document);
* a viewer of tenant A cannot mutate anything but their own session/password;
* tenant administrators cannot use platform operations;
* platform administrators may read tenant data but not change a tenant's
  configuration;
* without a session everything but `login` and the enrolment is UNAUTHENTICATED;
* the rightful caller succeeds, so none of the refusals pass vacuously.

The agent's operations take the installation token instead of a session: an
agent of tenant B reaching for tenant A's command gets NOT_FOUND, a user's
session (even the owner's) is FORBIDDEN there, and an agent token is FORBIDDEN
on the website's operations. The enrolment needs no session, only a valid
license key, which alone decides the tenant.

Subscriptions run through the schema itself, without a WebSocket: a refused one
answers with its error at once; an accepted one gets one event (made by the
case's `trigger`, or already waiting) and is closed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse, validate
from sqlalchemy import func, select, text, update
from starlette.requests import HTTPConnection
from strawberry.types import ExecutionResult

from api.models import AuditLog, Command, Installation
from api.pubsub import tenant_events
from api.runtime import Runtime
from api.services import notify, watchdog
from schema.context import Context
from schema.schema import build_schema
from tests.conftest import GraphQL, error_codes
from tests.world import PASSWORD, TenantData, World, wav_bytes

DENIED = {"NOT_FOUND", "FORBIDDEN"}


class Kind(enum.Enum):
    SELF = "self"  # anyone signed in acts on themselves (login needs no session)
    PLATFORM = "platform_only"  # platform administrators only
    TENANT_READ = "tenant_read"  # a tenant's data; its users and platform admins read it
    TENANT_WRITE = "tenant_write"  # a tenant's configuration; its administrators only
    AGENT = "agent"  # a tenant's installation, with its agent token; users are FORBIDDEN
    PUBLIC = "public"  # no session; a secret argument (the license key) decides


# The self-service operations are exempt from the viewer and outsider refusals;
# the exemption is listed here so that a new operation cannot slip into it.
SELF_SERVICE = {"Query.me", "Mutation.login", "Mutation.logout", "Mutation.changePassword"}
# Tenant data only its administrators read (and platform admins): viewers are refused.
ADMINS_READ = {"Query.auditLog"}
# Likewise for the operations that need no session at all.
PUBLIC_OPERATIONS = {"Mutation.registerInstallation"}

Variables = Callable[[World, TenantData], dict[str, Any]]
# Makes something in tenant `t` of a real world (e.g. an open command); returns variables
# that override the case's own.
Prepare = Callable[[GraphQL, Runtime, World, TenantData], Awaitable[dict[str, Any]]]
# Makes one event for a listening subscription on tenant `t`.
Trigger = Callable[[GraphQL, Runtime, World, TenantData], Awaitable[object]]


def _none(world: World, t: TenantData) -> dict[str, Any]:
    return {}


def _domain(t: TenantData) -> str:
    return t.admin_email.split("@", 1)[1]


def _is_owners(t: TenantData) -> bool:
    return _domain(t) == "owner.example"


def _tenant_name(t: TenantData) -> str:
    return "Owner AG" if _is_owners(t) else "Outsider GmbH"


def _license_key(world: World, t: TenantData) -> str:
    # Ghost worlds have no keys: a made-up one names no license.
    return world.tokens.get("license_a" if _is_owners(t) else "license_b", "key-Nobody KG")


def _admin_token(world: World, t: TenantData) -> str:
    return world.tokens["owner" if _is_owners(t) else "outsider"]


@dataclass(frozen=True)
class Case:
    kind: Kind
    document: str
    # Variables aimed at tenant `t`'s objects (the tests pass tenant A, or B as a control).
    variables: Variables = _none
    # The operation takes an optional `tenantId`: without it a tenant user gets their own
    # tenant's rows; naming another tenant must be refused.
    tenant_arg: bool = False
    # The mutation names no object: an outsider acts in their own tenant, which is fine
    # as long as tenant A stays untouched.
    own_tenant_only: bool = False
    # A string the rightful caller's answer contains (the answer is not vacuously empty).
    shows: Callable[[World, TenantData], str] | None = None
    # Run before the request on a real world (not on a ghost world, which has nothing).
    prepare: Prepare | None = None
    # Subscriptions: makes the event the listening subscription answers with.
    trigger: Trigger | None = None


def _id(value: uuid.UUID) -> str:
    return str(value)


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=365)).isoformat()


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _open_command(gql: GraphQL, rt: Runtime, world: World, t: TenantData) -> dict[str, Any]:
    """A pending command of tenant `t`, made the way the website makes one."""
    data = await gql.as_(_admin_token(world, t)).ok(
        "mutation($name: String!) { createGroup(name: $name) { id status } }",
        name=f"Gruppe {_domain(t)} {uuid.uuid4().hex[:8]}",
    )
    assert data["createGroup"]["status"] == "PENDING"
    return {"id": data["createGroup"]["id"]}


async def _an_open_command(
    gql: GraphQL, rt: Runtime, world: World, t: TenantData
) -> dict[str, Any]:
    await _open_command(gql, rt, world, t)
    return {}


async def _directory_reported(gql: GraphQL, rt: Runtime, world: World, t: TenantData) -> None:
    # The wake-up an agent's directory report sends (end to end in test_agent_service).
    await rt.hub.publish(tenant_events(t.tenant_id), notify.event("directory"))


async def _health_reported(gql: GraphQL, rt: Runtime, world: World, t: TenantData) -> None:
    # The wake-up an agent's health report sends.
    await rt.hub.publish(tenant_events(t.tenant_id), notify.event("health", t.installation_id))


async def _failing_installation(
    gql: GraphQL, rt: Runtime, world: World, t: TenantData
) -> dict[str, Any]:
    """An open incident of tenant `t`, made by the watchdog's own sweep (idempotent)."""
    async with rt.db.transaction() as s:
        await s.execute(
            update(Installation)
            .where(Installation.id == t.installation_id)
            .values(pbx_reachable=False)
        )
    await watchdog.sweep(rt)
    return {}


async def _broadcast_reported(gql: GraphQL, rt: Runtime, world: World, t: TenantData) -> None:
    # The wake-up an agent's broadcast report sends, for the world's own broadcast.
    await rt.hub.publish(tenant_events(t.tenant_id), notify.event("broadcast", t.broadcast_id))


async def _audited(gql: GraphQL, rt: Runtime, world: World, t: TenantData) -> dict[str, Any]:
    # An audit entry of tenant `t`, as its administrator's change writes it (issue 17).
    async with rt.db.transaction() as s:
        s.add(
            AuditLog(
                tenant_id=t.tenant_id,
                actor_user_id=t.admin_user_id,
                action="group.create",
                target=str(t.group_id),
            )
        )
    return {}


async def _under_way(gql: GraphQL, rt: Runtime, world: World, t: TenantData) -> dict[str, Any]:
    # Only a running broadcast can be stopped (cancelBroadcast, issue 17).
    from api.models import Broadcast, BroadcastStatus

    async with rt.db.transaction() as s:
        await s.execute(
            update(Broadcast)
            .where(Broadcast.id == t.broadcast_id)
            .values(status=BroadcastStatus.RUNNING, finished_at=None)
        )
    return {}


CASES: dict[str, Case] = {
    # --- queries ------------------------------------------------------------------
    "Query.auditLog": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { auditLog(tenantId: $tenantId) "
        "{ nodes { id action target tenantId actorEmail } } }",
        tenant_arg=True,
        prepare=_audited,
        shows=lambda w, t: _id(t.group_id),
    ),
    "Query.me": Case(
        Kind.SELF,
        "query { me { id email tenantId role } }",
        shows=lambda w, t: t.admin_email,
    ),
    "Query.tenants": Case(
        Kind.PLATFORM,
        "query { tenants { id name contactEmail } }",
        shows=lambda w, t: _id(t.tenant_id),
    ),
    "Query.tenant": Case(
        Kind.TENANT_READ,
        "query($id: ID!) { tenant(id: $id) { id name contactEmail active } }",
        lambda w, t: {"id": _id(t.tenant_id)},
        shows=lambda w, t: _id(t.tenant_id),
    ),
    "Query.licenses": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { licenses(tenantId: $tenantId) { id tenantId keyPrefix seats } }",
        tenant_arg=True,
        shows=lambda w, t: _id(t.license_id),
    ),
    "Query.users": Case(
        Kind.PLATFORM,
        "query($tenantId: ID) { users(tenantId: $tenantId) { id email tenantId role } }",
        lambda w, t: {"tenantId": _id(t.tenant_id)},
        shows=lambda w, t: t.viewer_email,
    ),
    "Query.installations": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { installations(tenantId: $tenantId) "
        "{ id tenantId licenseId hostname openIncidents { id kind } } }",
        tenant_arg=True,
        prepare=_failing_installation,
        shows=lambda w, t: "PBX_UNREACHABLE",
    ),
    "Query.agentConnection": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { agentConnection(tenantId: $tenantId) "
        "{ state since installation { id hostname connected pbxReachable } } }",
        tenant_arg=True,
        shows=lambda w, t: f"swyx.{_domain(t)}",
    ),
    "Query.incidents": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { incidents(tenantId: $tenantId) "
        "{ id tenantId installationId hostname kind openedAt } }",
        tenant_arg=True,
        prepare=_failing_installation,
        shows=lambda w, t: _id(t.installation_id),
    ),
    "Query.pbxSettings": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { pbxSettings(tenantId: $tenantId) "
        "{ host adminUser adminPasswordSet pollIntervalSeconds } }",
        tenant_arg=True,
        shows=lambda w, t: f"swyx.{_domain(t)}",
    ),
    "Query.pbxUsers": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { pbxUsers(tenantId: $tenantId) { id name extension } }",
        tenant_arg=True,
        shows=lambda w, t: _id(t.users[0]),
    ),
    "Query.groups": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { groups(tenantId: $tenantId) { id name members { id name } "
        "broadcast { name extension pin announcements { id downloadUrl } } } }",
        tenant_arg=True,
        shows=lambda w, t: _id(t.group_id),
    ),
    "Query.group": Case(
        Kind.TENANT_READ,
        "query($id: ID!) { group(id: $id) { id name members { id } "
        "broadcast { extension pin announcements { id downloadUrl } } } }",
        lambda w, t: {"id": _id(t.group_id)},
        shows=lambda w, t: _id(t.users[0]),
    ),
    "Query.commands": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { commands(tenantId: $tenantId) { id type status payload } }",
        tenant_arg=True,
        shows=lambda w, t: _id(t.command_id),
    ),
    "Query.command": Case(
        Kind.TENANT_READ,
        "query($id: ID!) { command(id: $id) { id type status payload } }",
        lambda w, t: {"id": _id(t.command_id)},
        shows=lambda w, t: _id(t.command_id),
    ),
    "Query.broadcasts": Case(
        Kind.TENANT_READ,
        "query($tenantId: ID) { broadcasts(tenantId: $tenantId) { nodes { id groupName "
        "group { id } attempts { id memberName member { id } } } pageInfo { hasNextPage } } }",
        tenant_arg=True,
        shows=lambda w, t: _id(t.broadcast_id),
    ),
    "Query.broadcast": Case(
        Kind.TENANT_READ,
        "query($id: ID!) { broadcast(id: $id) { id groupName group { id } "
        "attempts { id memberName member { id } } } }",
        lambda w, t: {"id": _id(t.broadcast_id)},
        shows=lambda w, t: _id(t.users[0]),
    ),
    # --- mutations: the own session -------------------------------------------------
    "Mutation.login": Case(
        Kind.SELF,
        "mutation($email: String!, $password: String!) "
        "{ login(email: $email, password: $password) { token user { id email } } }",
        lambda w, t: {"email": t.admin_email, "password": PASSWORD},
        shows=lambda w, t: t.admin_email,
    ),
    "Mutation.logout": Case(Kind.SELF, "mutation { logout }"),
    "Mutation.changePassword": Case(
        Kind.SELF,
        "mutation($current: String!, $new: String!) "
        "{ changePassword(currentPassword: $current, newPassword: $new) }",
        lambda w, t: {"current": PASSWORD, "new": "a much longer new password"},
    ),
    # --- mutations: platform administration ------------------------------------------
    "Mutation.createTenant": Case(
        Kind.PLATFORM,
        "mutation($input: TenantInput!) { createTenant(input: $input) { id name } }",
        lambda w, t: {"input": {"name": "Third Tenant KG", "contactEmail": "it@third.example"}},
    ),
    "Mutation.updateTenant": Case(
        Kind.PLATFORM,
        "mutation($id: ID!, $input: TenantUpdateInput!) "
        "{ updateTenant(id: $id, input: $input) { id name contactEmail } }",
        lambda w, t: {"id": _id(t.tenant_id), "input": {"contactEmail": "x@attacker.example"}},
    ),
    "Mutation.deactivateTenant": Case(
        Kind.PLATFORM,
        "mutation($id: ID!) { deactivateTenant(id: $id) { id active } }",
        lambda w, t: {"id": _id(t.tenant_id)},
    ),
    "Mutation.issueLicense": Case(
        Kind.PLATFORM,
        "mutation($tenantId: ID!, $seats: Int!, $validUntil: DateTime!) { issueLicense("
        "tenantId: $tenantId, seats: $seats, validUntil: $validUntil) "
        "{ key license { id tenantId } } }",
        lambda w, t: {"tenantId": _id(t.tenant_id), "seats": 10, "validUntil": _future()},
        shows=lambda w, t: _id(t.tenant_id),
    ),
    "Mutation.revokeLicense": Case(
        Kind.PLATFORM,
        "mutation($id: ID!) { revokeLicense(id: $id) { id revokedAt } }",
        lambda w, t: {"id": _id(t.license_id)},
    ),
    "Mutation.createUser": Case(
        Kind.PLATFORM,
        "mutation($input: UserInput!) { createUser(input: $input) { id email tenantId role } }",
        lambda w, t: {
            "input": {
                "email": f"intruder@{_domain(t)}",
                "name": "Intruder",
                "role": "TENANT_ADMIN",
                "password": "a long enough password",
                "tenantId": _id(t.tenant_id),
            }
        },
        shows=lambda w, t: _id(t.tenant_id),
    ),
    "Mutation.updateUser": Case(
        Kind.PLATFORM,
        "mutation($id: ID!, $input: UserUpdateInput!) "
        "{ updateUser(id: $id, input: $input) { id role } }",
        lambda w, t: {"id": _id(t.viewer_user_id), "input": {"role": "TENANT_ADMIN"}},
    ),
    "Mutation.deactivateUser": Case(
        Kind.PLATFORM,
        "mutation($id: ID!) { deactivateUser(id: $id) { id active } }",
        lambda w, t: {"id": _id(t.admin_user_id)},
    ),
    "Mutation.revokeInstallation": Case(
        Kind.PLATFORM,
        "mutation($id: ID!) { revokeInstallation(id: $id) { id revokedAt } }",
        lambda w, t: {"id": _id(t.installation_id)},
    ),
    # --- mutations: a tenant's configuration --------------------------------------------
    "Mutation.updatePbxSettings": Case(
        Kind.TENANT_WRITE,
        "mutation($input: PbxSettingsInput!) { updatePbxSettings(input: $input) "
        "{ settings { host pollIntervalSeconds } command { id type } } }",
        lambda w, t: {"input": {"pollIntervalSeconds": 120}},
        own_tenant_only=True,
    ),
    "Mutation.verifyPbxCredentials": Case(
        Kind.TENANT_WRITE,
        "mutation { verifyPbxCredentials { settings { host verificationState } "
        "command { id type } } }",
        own_tenant_only=True,
    ),
    "Mutation.createGroup": Case(
        Kind.TENANT_WRITE,
        "mutation($name: String!) { createGroup(name: $name) { id type payload } }",
        lambda w, t: {"name": "Neue Gruppe"},
        own_tenant_only=True,
    ),
    "Mutation.syncDirectory": Case(
        Kind.TENANT_WRITE,
        "mutation { syncDirectory { id type payload } }",
        lambda w, t: {},
        own_tenant_only=True,
    ),
    "Mutation.addGroupMembers": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $userIds: [ID!]!) "
        "{ addGroupMembers(groupId: $groupId, userIds: $userIds) { id type payload } }",
        lambda w, t: {"groupId": _id(t.plain_group_id), "userIds": [_id(t.users[0])]},
    ),
    "Mutation.removeGroupMembers": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $userIds: [ID!]!) "
        "{ removeGroupMembers(groupId: $groupId, userIds: $userIds) { id type payload } }",
        lambda w, t: {"groupId": _id(t.group_id), "userIds": [_id(t.users[0])]},
    ),
    "Mutation.enableBroadcast": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!) { enableBroadcast(groupId: $groupId) { id type payload } }",
        lambda w, t: {"groupId": _id(t.plain_group_id)},
    ),
    "Mutation.disableBroadcast": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!) { disableBroadcast(groupId: $groupId) { id type payload } }",
        lambda w, t: {"groupId": _id(t.group_id)},
    ),
    "Mutation.updateBroadcastAgent": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $extension: String, $pin: String) { updateBroadcastAgent("
        "groupId: $groupId, extension: $extension, pin: $pin) { id type payload } }",
        lambda w, t: {"groupId": _id(t.group_id), "extension": "298", "pin": "135790"},
    ),
    "Mutation.triggerBroadcast": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $mode: BroadcastMode!) "
        "{ triggerBroadcast(groupId: $groupId, mode: $mode) { id type payload } }",
        lambda w, t: {"groupId": _id(t.group_id), "mode": "TEST"},
    ),
    "Mutation.cancelBroadcast": Case(
        Kind.TENANT_WRITE,
        "mutation($id: ID!) { cancelBroadcast(id: $id) { id type payload } }",
        lambda w, t: {"id": _id(t.broadcast_id)},
        prepare=_under_way,
    ),
    "Mutation.updateBroadcastOptions": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $quorum: Int, $repetitions: Int!) { updateBroadcastOptions("
        "groupId: $groupId, quorum: $quorum, repetitions: $repetitions) { id type payload } }",
        lambda w, t: {"groupId": _id(t.group_id), "quorum": 2, "repetitions": 3},
    ),
    "Mutation.setAnnouncement": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $kind: AnnouncementKind!, $uploadId: ID!) { setAnnouncement("
        "groupId: $groupId, kind: $kind, uploadId: $uploadId) "
        "{ announcement { id status downloadUrl } command { id type } } }",
        lambda w, t: {"groupId": _id(t.group_id), "kind": "TEST", "uploadId": _id(t.audio_id)},
        shows=lambda w, t: _id(t.audio_id),
    ),
    "Mutation.synthesizeAnnouncement": Case(
        Kind.TENANT_WRITE,
        "mutation($groupId: ID!, $kind: AnnouncementKind!, $text: String!, $language: Language!)"
        " { synthesizeAnnouncement(groupId: $groupId, kind: $kind, text: $text, "
        "language: $language) { announcement { id status text } command { id } } }",
        lambda w, t: {
            "groupId": _id(t.group_id),
            "kind": "TEST",
            "text": "Dies ist ein Probealarm.",
            "language": "DE",
        },
    ),
    # --- the agent ----------------------------------------------------------------------
    "Mutation.registerInstallation": Case(
        Kind.PUBLIC,
        "mutation($licenseKey: String!, $hostname: String!, $agentVersion: String!) "
        "{ registerInstallation(licenseKey: $licenseKey, hostname: $hostname, "
        "agentVersion: $agentVersion) { installationId tenantName token } }",
        lambda w, t: {
            "licenseKey": _license_key(w, t),
            "hostname": f"agent.{_domain(t)}",
            "agentVersion": "1.0.0",
        },
        shows=lambda w, t: _tenant_name(t),
    ),
    "Mutation.completeCommand": Case(
        Kind.AGENT,
        "mutation($id: ID!, $ok: Boolean!, $result: JSON) { completeCommand("
        "id: $id, ok: $ok, result: $result) { id type status payload result } }",
        lambda w, t: {"id": _id(t.command_id), "ok": True, "result": {"created": True}},
        prepare=_open_command,
        shows=lambda w, t: _domain(t),
    ),
    "Mutation.reportHealth": Case(
        Kind.AGENT,
        "mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }",
        lambda w, t: {
            "input": {
                "agentVersion": "1.0.1",
                "pbxReachable": True,
                "alarmServiceOk": True,
                "participantCount": 4,
                "reportedAt": _now(),
            }
        },
        own_tenant_only=True,
    ),
    "Mutation.reportBroadcast": Case(
        Kind.AGENT,
        "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }",
        lambda w, t: {
            "input": {
                "broadcastId": f"agent-{uuid.uuid4().hex}",
                "groupPbxId": "g1",
                "mode": "ALARM",
                "startedAt": _now(),
                "memberCount": 3,
                "status": "RUNNING",
                "events": [
                    {
                        "seq": 1,
                        "memberPbxId": "u0",
                        "memberName": "Member 0",
                        "attemptNo": 1,
                        "kind": "started",
                        "at": _now(),
                    }
                ],
            }
        },
        own_tenant_only=True,
    ),
    "Mutation.reportNotice": Case(
        Kind.AGENT,
        "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }",
        lambda w, t: {
            "input": {
                "noticeId": f"notice-{uuid.uuid4().hex}",
                "kind": "wrongPins",
                "agentNumber": "299",
                "callerNumber": "0301234567",
                "count": 10,
                "at": _now(),
            }
        },
        own_tenant_only=True,
    ),
    "Subscription.agentCommands": Case(
        Kind.AGENT,
        "subscription { agentCommands { id type payload secrets } }",
        own_tenant_only=True,
        prepare=_an_open_command,
        shows=lambda w, t: _domain(t),
    ),
    # --- live updates for the website ------------------------------------------------------
    "Subscription.commandUpdated": Case(
        Kind.TENANT_READ,
        "subscription($tenantId: ID) { commandUpdated(tenantId: $tenantId) "
        "{ id type status payload } }",
        tenant_arg=True,
        trigger=_open_command,
        shows=lambda w, t: _domain(t),
    ),
    "Subscription.broadcastUpdated": Case(
        Kind.TENANT_READ,
        "subscription($tenantId: ID) { broadcastUpdated(tenantId: $tenantId) { id groupName } }",
        tenant_arg=True,
        trigger=_broadcast_reported,
    ),
    "Subscription.agentConnectionChanged": Case(
        Kind.TENANT_READ,
        "subscription($tenantId: ID) { agentConnectionChanged(tenantId: $tenantId) "
        "{ state since installation { id hostname } } }",
        tenant_arg=True,
        # It answers with the current state at once; a report wakes it as well.
        trigger=_health_reported,
        shows=lambda w, t: f"swyx.{_domain(t)}",
    ),
    "Subscription.directoryChanged": Case(
        Kind.TENANT_READ,
        "subscription($tenantId: ID) { directoryChanged(tenantId: $tenantId) { at } }",
        tenant_arg=True,
        trigger=_directory_reported,
    ),
}


def _keys(*kinds: Kind, operation: str | None = None) -> list[str]:
    return [
        key
        for key, case in CASES.items()
        if case.kind in kinds and (operation is None or key.startswith(f"{operation}."))
    ]


# --- helpers --------------------------------------------------------------------


def _schema_root_fields() -> set[str]:
    schema = build_schema()._schema
    names: set[str] = set()
    for label, root in (
        ("Query", schema.query_type),
        ("Mutation", schema.mutation_type),
        ("Subscription", schema.subscription_type),
    ):
        if root is not None:
            names |= {f"{label}.{name}" for name in root.fields}
    return names


def _rightful_token(world: World, key: str) -> str | None:
    kind = CASES[key].kind
    if key == "Mutation.login" or kind is Kind.PUBLIC:
        return None
    if kind is Kind.AGENT:
        return world.tokens["agent_a"]
    return world.tokens["platform" if kind is Kind.PLATFORM else "owner"]


def _outsider_token(world: World, key: str) -> str:
    return world.tokens["agent_b" if CASES[key].kind is Kind.AGENT else "outsider"]


def _vars(key: str, world: World, t: TenantData, **extra: Any) -> dict[str, Any]:
    return {**CASES[key].variables(world, t), **extra}


async def _variables(
    gql: GraphQL, rt: Runtime, key: str, world: World, t: TenantData, **extra: Any
) -> dict[str, Any]:
    """The case's variables for tenant `t` of a real world, after making what they name."""
    prepare = CASES[key].prepare
    made = await prepare(gql, rt, world, t) if prepare is not None else {}
    return {**CASES[key].variables(world, t), **made, **extra}


async def _call(
    gql: GraphQL, token: str | None, key: str, world: World, t: TenantData, **extra: Any
) -> dict[str, Any]:
    return await gql.as_(token)(CASES[key].document, **_vars(key, world, t, **extra))


async def _run(
    gql: GraphQL,
    rt: Runtime,
    token: str | None,
    key: str,
    world: World,
    t: TenantData,
    variables: dict[str, Any],
) -> dict[str, Any]:
    """Any case with the given variables: over HTTP, or as a subscription on tenant `t`."""
    case = CASES[key]
    if not key.startswith("Subscription."):
        return await gql.as_(token)(case.document, **variables)
    trigger = case.trigger

    async def make_event() -> None:
        if trigger is not None:
            await trigger(gql, rt, world, t)

    return await subscribe_once(rt, token, case.document, variables, make_event)


@functools.cache
def _schema() -> Any:
    return build_schema()


def _body(result: ExecutionResult) -> dict[str, Any]:
    """A subscription's result shaped like an HTTP response body."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return body


async def subscribe_once(
    rt: Runtime,
    token: str | None,
    document: str,
    variables: dict[str, Any],
    make_event: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Runs a subscription without a WebSocket and returns its first result.

    A refused subscription answers at once. An accepted one starts listening on
    the hub, answers with what waits for it or with the event `make_event`
    makes, and is closed again before this returns. A stream that ended without
    an answer comes back as `{"data": None}`.
    """
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    request = HTTPConnection(
        {
            "type": "http",
            "method": "GET",
            "path": "/graphql",
            "headers": headers,
            "query_string": b"",
        }
    )
    context = Context(rt=rt, request=request, response=None, client="test")
    listening = rt.hub.subscriber_count
    stream = await _schema().subscribe(document, variable_values=variables, context_value=context)
    if isinstance(stream, ExecutionResult):
        return _body(stream)
    first = asyncio.ensure_future(anext(stream))
    try:
        async with asyncio.timeout(5):
            while not first.done() and rt.hub.subscriber_count == listening:
                await asyncio.wait([first], timeout=0.01)
        if not first.done():
            await make_event()
        try:
            result: ExecutionResult | None = await asyncio.wait_for(first, 5)
        except TimeoutError:
            pytest.fail(f"the subscription answered nothing within 5 s: {document}")
        except StopAsyncIteration:
            result = None
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first
        await stream.aclose()
    # A resolver's inner generator is closed by the event loop's finalizer a turn later.
    for _ in range(10):
        if rt.hub.subscriber_count == listening:
            break
        await asyncio.sleep(0)
    assert rt.hub.subscriber_count == listening, "the closed subscription still listens"
    return _body(result) if result is not None else {"data": None}


async def snapshot(rt: Runtime, tenant_id: uuid.UUID | None = None) -> dict[str, str]:
    """Row count and checksum of every table (or only of one tenant's rows).

    Two snapshots are equal exactly when nothing was inserted, updated or deleted.
    """
    async with rt.db.reading() as s:
        columns: dict[str, set[str]] = {}
        for table, column in await s.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        ):
            columns.setdefault(table, set()).add(column)
        result: dict[str, str] = {}
        for table, cols in sorted(columns.items()):
            if table == "alembic_version":
                continue
            where = ""
            if tenant_id is not None:
                if table == "tenant":
                    where = "WHERE t.id = :tid"
                elif "tenant_id" in cols:
                    where = "WHERE t.tenant_id = :tid"
                elif "user_id" in cols:
                    where = "WHERE t.user_id IN (SELECT id FROM app_user WHERE tenant_id = :tid)"
                else:
                    continue
            count, digest = (
                await s.execute(
                    text(
                        "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text),"
                        f" '')) FROM \"{table}\" AS t {where}"
                    ),
                    {"tid": tenant_id},
                )
            ).one()
            result[table] = f"{count} rows, {digest}"
        if tenant_id is not None:
            # Spelled out as well, so that a failure names the two that matter most.
            result["commands of the tenant"] = str(
                await s.scalar(
                    select(func.count()).select_from(Command).where(Command.tenant_id == tenant_id)
                )
            )
            result["audit entries of the tenant"] = str(
                await s.scalar(
                    select(func.count())
                    .select_from(AuditLog)
                    .where(AuditLog.tenant_id == tenant_id)
                )
            )
    return result


async def tenant_markers(rt: Runtime, t: TenantData) -> set[str]:
    """Strings that only tenant `t`'s data contains: the ids of all its rows, its domain."""
    markers = {_domain(t), "Owner AG" if _domain(t) == "owner.example" else "Outsider GmbH"}
    async with rt.db.reading() as s:
        tables = [
            row[0]
            for row in await s.execute(
                text(
                    "SELECT c.table_name FROM information_schema.columns c "
                    "JOIN information_schema.columns i ON i.table_name = c.table_name "
                    "AND i.table_schema = c.table_schema AND i.column_name = 'id' "
                    "WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id'"
                )
            )
        ]
        for table in tables:
            ids = await s.scalars(
                text(f'SELECT id::text FROM "{table}" WHERE tenant_id = :tid'),
                {"tid": t.tenant_id},
            )
            markers.update(ids)
    markers.add(str(t.tenant_id))
    return markers


def leaked(body: dict[str, Any], markers: set[str]) -> list[str]:
    dumped = json.dumps(body)
    return sorted(m for m in markers if m in dumped)


def assert_denied(body: dict[str, Any], codes: set[str], markers: set[str]) -> None:
    found = error_codes(body)
    assert found, f"expected {sorted(codes)}, got {body}"
    assert set(found) <= codes, body
    assert body.get("data") is None, body
    assert not leaked(body, markers), body


def _ghost_tenant(domain: str) -> TenantData:
    def new() -> uuid.UUID:
        return uuid.uuid4()

    return TenantData(
        tenant_id=new(),
        admin_email=f"admin@{domain}",
        viewer_email=f"viewer@{domain}",
        users=[new(), new(), new()],
        group_id=new(),
        plain_group_id=new(),
        broadcast_group_id=new(),
        audio_id=new(),
        announcement_id=new(),
        broadcast_id=new(),
        command_id=new(),
        license_id=new(),
        installation_id=new(),
        admin_user_id=new(),
        viewer_user_id=new(),
    )


def ghost_world() -> World:
    """A world of made-up ids, for requests that must fail before any lookup."""
    return World(
        platform_email="ops@rundruf.example",
        platform_user_id=uuid.uuid4(),
        a=_ghost_tenant("owner.example"),
        b=_ghost_tenant("outsider.example"),
        tokens={},
    )


# --- the table against the schema -----------------------------------------------------


def test_every_operation_has_an_authorization_case():
    in_schema = _schema_root_fields()
    assert in_schema - set(CASES) == set(), "operations without an authorization case"
    assert set(CASES) - in_schema == set(), "cases for operations the schema does not have"


def test_every_case_document_is_valid_and_calls_its_operation():
    schema = build_schema()._schema
    for key, case in CASES.items():
        operation, field = key.split(".")
        document = parse(case.document)
        assert validate(schema, document) == [], key
        [definition] = document.definitions
        assert isinstance(definition, OperationDefinitionNode), key
        assert definition.operation.value == operation.lower(), key
        roots = [sel.name.value for sel in definition.selection_set.selections]  # type: ignore[attr-defined]
        assert roots == [field], key


def test_the_kinds_are_consistent():
    assert {k for k, c in CASES.items() if c.kind is Kind.SELF} == SELF_SERVICE
    assert {k for k, c in CASES.items() if c.kind is Kind.PUBLIC} == PUBLIC_OPERATIONS
    for key, case in CASES.items():
        if key.startswith("Mutation."):
            assert case.kind is not Kind.TENANT_READ, key
        else:
            assert case.kind not in (Kind.TENANT_WRITE, Kind.PUBLIC), key
        assert not (case.own_tenant_only and case.kind not in (Kind.TENANT_WRITE, Kind.AGENT)), key
        assert not (case.tenant_arg and case.kind is not Kind.TENANT_READ), key
        if key.startswith("Subscription."):
            # The rightful caller must get an event, or its success would be vacuous.
            assert case.trigger is not None or case.prepare is not None, key
        else:
            assert case.trigger is None, key


# --- the rightful caller gets through (so the refusals below are not vacuous) ---------


@pytest.mark.parametrize("key", list(CASES))
async def test_the_rightful_caller_gets_through(key, gql, rt, world):
    case = CASES[key]
    variables = await _variables(gql, rt, key, world, world.a)
    before = await snapshot(rt)
    body = await _run(gql, rt, _rightful_token(world, key), key, world, world.a, variables)
    assert not body.get("errors"), body
    assert body["data"] and all(v is not None for v in body["data"].values()), body
    if case.shows is not None:
        assert case.shows(world, world.a) in json.dumps(body), body
    if key.startswith("Mutation."):
        assert await snapshot(rt) != before, "the mutation changed nothing; the case is vacuous"


# --- an outsider ------------------------------------------------------------------


# `login` and the enrolment need no session: the enrolment's refusals are tested below.
OUTSIDER_KEYS = [k for k in CASES if k != "Mutation.login" and CASES[k].kind is not Kind.PUBLIC]


@pytest.mark.parametrize("key", OUTSIDER_KEYS)
async def test_an_outsider_cannot_reach_the_owners_tenant(key, gql, rt, world):
    case = CASES[key]
    outsider = _outsider_token(world, key)
    # Tenant A has what the case names (e.g. an open command) before anything is compared.
    variables_a = await _variables(gql, rt, key, world, world.a)
    markers = await tenant_markers(rt, world.a)
    before_all = await snapshot(rt)
    before_a = await snapshot(rt, world.a.tenant_id)

    if case.kind is Kind.SELF or case.own_tenant_only:
        # Names no object of tenant A: acts on the outsider or their own tenant only.
        variables_b = await _variables(gql, rt, key, world, world.b)
        body = await _run(gql, rt, outsider, key, world, world.b, variables_b)
        assert not body.get("errors"), body
        assert not leaked(body, markers), body
        if case.shows is not None:
            assert case.shows(world, world.b) in json.dumps(body), body
        assert await snapshot(rt, world.a.tenant_id) == before_a
        return

    extra = {"tenantId": _id(world.a.tenant_id)} if case.tenant_arg else {}
    body = await _run(gql, rt, outsider, key, world, world.a, {**variables_a, **extra})
    assert_denied(body, DENIED, markers)
    assert await snapshot(rt) == before_all, "a refused request changed the database"
    # Tenant A's objects are refused in the very words used for objects that do not
    # exist, so the answer does not even tell that they exist.
    ghost = ghost_world()
    extra_ghost = {"tenantId": _id(ghost.a.tenant_id)} if case.tenant_arg else {}
    nowhere = await _run(
        gql, rt, outsider, key, ghost, ghost.a, _vars(key, ghost, ghost.a, **extra_ghost)
    )
    assert nowhere == body

    if case.kind is Kind.PLATFORM:
        return
    # Control: the same document on the outsider's own tenant works, and a list
    # without a tenant named shows the outsider's tenant only.
    if case.tenant_arg:
        variables_b = await _variables(gql, rt, key, world, world.b)
        body = await _run(gql, rt, outsider, key, world, world.b, variables_b)
        assert not body.get("errors"), body
        assert not leaked(body, markers), body
        if case.shows is not None:
            assert case.shows(world, world.b) in json.dumps(body), body
        extra = {"tenantId": _id(world.b.tenant_id)}
    variables_b = await _variables(gql, rt, key, world, world.b, **extra)
    body = await _run(gql, rt, outsider, key, world, world.b, variables_b)
    assert not body.get("errors"), body
    assert not leaked(body, markers), body
    assert await snapshot(rt, world.a.tenant_id) == before_a


# --- a viewer of the owner's tenant --------------------------------------------------


VIEWER_KEYS = _keys(Kind.PLATFORM, Kind.TENANT_WRITE, operation="Mutation")


@pytest.mark.parametrize("key", VIEWER_KEYS)
async def test_a_viewer_cannot_mutate(key, gql, rt, world):
    before = await snapshot(rt)
    body = await _call(gql, world.tokens["viewer"], key, world, world.a)
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body.get("data") is None, body
    assert await snapshot(rt) == before, "a refused request changed the database"


async def test_a_viewer_reads_its_own_tenant_but_not_the_pin(gql, rt, world):
    viewer = world.tokens["viewer"]
    for key in set(_keys(Kind.TENANT_READ)) - ADMINS_READ:
        case = CASES[key]
        variables = await _variables(gql, rt, key, world, world.a)
        body = await _run(gql, rt, viewer, key, world, world.a, variables)
        assert not body.get("errors"), (key, body)
        assert body["data"] and all(v is not None for v in body["data"].values()), (key, body)
        if case.shows is not None:
            assert case.shows(world, world.a) in json.dumps(body), (key, body)
    data = await gql.as_(viewer).ok(CASES["Query.group"].document, id=_id(world.a.group_id))
    assert data["group"]["broadcast"]["pin"] is None


@pytest.mark.parametrize("key", sorted(ADMINS_READ))
async def test_a_viewer_cannot_read_what_admins_read(key, gql, rt, world):
    variables = await _variables(gql, rt, key, world, world.a)
    body = await _run(gql, rt, world.tokens["viewer"], key, world, world.a, variables)
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body.get("data") is None, body


async def test_a_viewer_may_change_its_password_and_sign_out(gql, world):
    viewer = gql.as_(world.tokens["viewer"])
    for key in ("Mutation.changePassword", "Mutation.logout"):
        case = CASES[key]
        await viewer.ok(case.document, **case.variables(world, world.a))
    assert error_codes(await viewer("{ me { id } }")) == ["UNAUTHENTICATED"]


# --- tenant administrators and platform operations -------------------------------------


@pytest.mark.parametrize("key", _keys(Kind.PLATFORM))
async def test_a_tenant_admin_cannot_use_platform_operations(key, gql, rt, world):
    before = await snapshot(rt)
    body = await _call(gql, world.tokens["owner"], key, world, world.a)
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body.get("data") is None, body
    assert await snapshot(rt) == before, "a refused request changed the database"


# --- platform administrators and tenant data -------------------------------------------


@pytest.mark.parametrize("key", _keys(Kind.TENANT_READ))
async def test_a_platform_admin_reads_tenant_data(key, gql, rt, world):
    case = CASES[key]
    extra = {"tenantId": _id(world.a.tenant_id)} if case.tenant_arg else {}
    variables = await _variables(gql, rt, key, world, world.a, **extra)
    body = await _run(gql, rt, world.tokens["platform"], key, world, world.a, variables)
    assert not body.get("errors"), body
    assert body["data"] and all(v is not None for v in body["data"].values()), body
    if case.shows is not None:
        assert case.shows(world, world.a) in json.dumps(body), body
    # Naming tenant A shows tenant A only.
    if case.tenant_arg:
        assert not leaked(body, await tenant_markers(rt, world.b)), body


@pytest.mark.parametrize("key", _keys(Kind.TENANT_READ, operation="Subscription"))
async def test_a_platform_admin_names_the_tenant_to_subscribe_to(key, gql, rt, world):
    body = await _run(
        gql, rt, world.tokens["platform"], key, world, world.a, _vars(key, world, world.a)
    )
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "tenantId"
    assert body.get("data") is None, body


@pytest.mark.parametrize("key", _keys(Kind.TENANT_WRITE))
async def test_a_platform_admin_cannot_change_a_tenants_configuration(key, gql, rt, world):
    before = await snapshot(rt)
    body = await _call(gql, world.tokens["platform"], key, world, world.a)
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body.get("data") is None, body
    assert await snapshot(rt) == before, "a refused request changed the database"


async def test_a_platform_admin_does_not_see_pins(gql, world):
    data = await gql.as_(world.tokens["platform"]).ok(
        CASES["Query.group"].document, id=_id(world.a.group_id)
    )
    assert data["group"]["broadcast"]["pin"] is None


# --- agents and users keep to their own operations -------------------------------------


@pytest.mark.parametrize("role", ["owner", "viewer", "platform"])
@pytest.mark.parametrize("key", _keys(Kind.AGENT))
async def test_a_users_session_is_no_agent(key, role, gql, rt, world):
    variables = await _variables(gql, rt, key, world, world.a)
    before = await snapshot(rt)
    body = await _run(gql, rt, world.tokens[role], key, world, world.a, variables)
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body.get("data") is None, body
    assert await snapshot(rt) == before, "a refused request changed the database"


USER_KEYS = [
    k for k, c in CASES.items() if c.kind not in (Kind.AGENT, Kind.PUBLIC) and k != "Mutation.login"
]


@pytest.mark.parametrize("key", USER_KEYS)
async def test_an_agent_token_is_no_session(key, gql, rt, world):
    variables = await _variables(gql, rt, key, world, world.a)
    before = await snapshot(rt)
    body = await _run(gql, rt, world.tokens["agent_a"], key, world, world.a, variables)
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body.get("data") is None, body
    assert await snapshot(rt) == before, "a refused request changed the database"


# --- the enrolment: no session, the license key decides ----------------------------------


ENROL = "Mutation.registerInstallation"


async def test_enrolment_with_a_wrong_key_is_not_found_and_writes_nothing(gql, rt, world):
    markers = await tenant_markers(rt, world.a) | await tenant_markers(rt, world.b)
    before = await snapshot(rt)
    bodies = []
    for token in (None, world.tokens["owner"], world.tokens["agent_a"]):
        for wrong in (
            "key-Nobody KG",
            world.tokens["license_a"] + "x",
            world.tokens["license_a"].upper(),
            world.tokens["agent_a"],
            world.tokens["owner"],
        ):
            body = await _call(gql, token, ENROL, world, world.a, licenseKey=wrong)
            assert_denied(body, {"NOT_FOUND"}, markers)
            bodies.append(body)
    assert await snapshot(rt) == before, "a refused enrolment changed the database"
    # No wrong key is told apart from another (nothing to learn by trying).
    assert all(body == bodies[0] for body in bodies)


async def test_the_license_key_alone_decides_the_tenant(gql, rt, world):
    before_a = await snapshot(rt, world.a.tenant_id)
    # Even with the owner's session, tenant B's key enrols into tenant B.
    body = await _call(gql, world.tokens["owner"], ENROL, world, world.b)
    assert not body.get("errors"), body
    assert body["data"]["registerInstallation"]["tenantName"] == "Outsider GmbH"
    assert not leaked(body, await tenant_markers(rt, world.a)), body
    assert await snapshot(rt, world.a.tenant_id) == before_a


# --- without a session -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [k for k in CASES if k != "Mutation.login" and CASES[k].kind is not Kind.PUBLIC]
)
async def test_without_a_session_it_is_unauthenticated(key, gql, rt):
    world = ghost_world()
    body = await _run(gql, rt, None, key, world, world.a, _vars(key, world, world.a))
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    assert body.get("data") is None, body


async def test_an_unknown_token_is_unauthenticated(gql, world):
    body = await gql.as_("rds_not-a-session")(CASES["Query.groups"].document)
    assert error_codes(body) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("key", _keys(Kind.AGENT))
async def test_an_unknown_agent_token_is_unauthenticated(key, gql, rt):
    world = ghost_world()
    variables = _vars(key, world, world.a)
    body = await _run(gql, rt, "rda_not-an-agent", key, world, world.a, variables)
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    assert body.get("data") is None, body


# --- named cases, including references that mix two tenants -----------------------------


async def test_an_agent_cannot_complete_another_tenants_command(gql, rt, world):
    key = "Mutation.completeCommand"
    variables = await _variables(gql, rt, key, world, world.a)  # tenant A's open command
    markers = await tenant_markers(rt, world.a)
    before = await snapshot(rt)
    body = await _run(gql, rt, world.tokens["agent_b"], key, world, world.a, variables)
    assert error_codes(body) == ["NOT_FOUND"], body
    assert not leaked(body, markers), body
    assert await snapshot(rt) == before
    # Still open for tenant A's own agent.
    done = await _run(gql, rt, world.tokens["agent_a"], key, world, world.a, variables)
    assert done["data"]["completeCommand"]["status"] == "SUCCEEDED", done


@pytest.mark.parametrize("key", _keys(Kind.TENANT_READ, operation="Subscription"))
async def test_it_rejects_subscribing_to_another_tenants_updates(key, gql, rt, world):
    variables = _vars(key, world, world.a, tenantId=_id(world.a.tenant_id))
    body = await _run(gql, rt, world.tokens["outsider"], key, world, world.a, variables)
    assert error_codes(body) == ["NOT_FOUND"], body
    assert not leaked(body, await tenant_markers(rt, world.a)), body


async def test_an_outsiders_subscription_hears_its_own_tenant_only(gql, rt, world):
    async def changes_in_both_tenants() -> None:
        await _open_command(gql, rt, world, world.a)
        await _open_command(gql, rt, world, world.b)

    body = await subscribe_once(
        rt,
        world.tokens["outsider"],
        CASES["Subscription.commandUpdated"].document,
        {},
        changes_in_both_tenants,
    )
    assert not body.get("errors"), body
    assert _domain(world.b) in json.dumps(body), body
    assert not leaked(body, await tenant_markers(rt, world.a)), body


async def test_a_deactivated_users_open_subscription_gets_nothing_more(gql, rt, world):
    async def deactivate_then_change() -> None:
        await gql.as_(world.tokens["platform"]).ok(
            CASES["Mutation.deactivateUser"].document, id=_id(world.a.viewer_user_id)
        )
        assert error_codes(await gql.as_(world.tokens["viewer"])("{ me { id } }")) == [
            "UNAUTHENTICATED"
        ]
        await _open_command(gql, rt, world, world.a)

    body = await subscribe_once(
        rt,
        world.tokens["viewer"],
        CASES["Subscription.commandUpdated"].document,
        {},
        deactivate_then_change,
    )
    assert body.get("data") is None, "the deactivated user still got tenant data"
    assert set(error_codes(body)) <= {"UNAUTHENTICATED"}, body


async def test_it_rejects_enable_broadcast_from_another_tenant(gql, rt, world):
    before = await snapshot(rt)
    body = await _call(gql, world.tokens["outsider"], "Mutation.enableBroadcast", world, world.a)
    assert error_codes(body) == ["NOT_FOUND"]
    assert await snapshot(rt) == before


async def test_it_rejects_reading_a_group_of_another_tenant(gql, rt, world):
    body = await _call(gql, world.tokens["outsider"], "Query.group", world, world.a)
    assert error_codes(body) == ["NOT_FOUND"]
    assert not leaked(body, await tenant_markers(rt, world.a))


async def test_it_rejects_adding_another_tenants_pbx_users_to_an_own_group(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["outsider"])(
        CASES["Mutation.addGroupMembers"].document,
        groupId=_id(world.b.plain_group_id),
        userIds=[_id(world.b.users[0]), _id(world.a.users[0])],
    )
    assert error_codes(body) == ["NOT_FOUND"], body
    assert await snapshot(rt) == before


async def test_it_rejects_another_tenants_upload_as_an_own_announcement(gql, rt, world):
    before = await snapshot(rt)
    body = await gql.as_(world.tokens["outsider"])(
        CASES["Mutation.setAnnouncement"].document,
        groupId=_id(world.b.group_id),
        kind="ALARM",
        uploadId=_id(world.a.audio_id),
    )
    assert error_codes(body) == ["NOT_FOUND"], body
    assert await snapshot(rt) == before


async def test_it_does_not_filter_into_another_tenants_broadcasts(gql, rt, world):
    data = await gql.as_(world.tokens["outsider"]).ok(
        "query($g: ID!) { broadcasts(filter: { groupId: $g }) { nodes { id } } }",
        g=_id(world.a.group_id),
    )
    assert data["broadcasts"]["nodes"] == []


async def test_it_rejects_downloading_another_tenants_audio(client, world):
    url = f"/api/audio/{world.a.audio_id}"
    outsider = await client.get(
        url, headers={"Authorization": f"Bearer {world.tokens['outsider']}"}
    )
    assert outsider.status_code == 404
    assert outsider.content != (await _owner_audio(client, world, url))


async def test_a_viewer_cannot_upload_audio(client, rt, world):
    before = await snapshot(rt)
    response = await client.post(
        "/api/uploads",
        content=wav_bytes(),
        headers={
            "Authorization": f"Bearer {world.tokens['viewer']}",
            "Content-Type": "audio/wav",
        },
    )
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert await snapshot(rt) == before


async def _owner_audio(client: Any, world: World, url: str) -> bytes:
    owner = await client.get(url, headers={"Authorization": f"Bearer {world.tokens['owner']}"})
    assert owner.status_code == 200
    content: bytes = owner.content
    return content


async def test_an_outsiders_logout_and_password_change_leave_the_owner_signed_in(gql, world):
    outsider = gql.as_(world.tokens["outsider"])
    case = CASES["Mutation.changePassword"]
    await outsider.ok(case.document, **case.variables(world, world.b))
    await outsider.ok(CASES["Mutation.logout"].document)
    data = await gql.as_(world.tokens["owner"]).ok("{ me { email } }")
    assert data["me"]["email"] == world.a.admin_email
