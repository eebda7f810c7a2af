"""Two tenants with everything a tenant can have: the owner's and an outsider's.

Rows that only the agent writes in production (the PBX mirror, broadcasts) are
inserted here directly, standing in for what an agent reported.
"""

from __future__ import annotations

import io
import uuid
import wave
from dataclasses import dataclass
from datetime import timedelta

from api.models import (
    Announcement,
    AnnouncementKind,
    AnnouncementSource,
    AnnouncementStatus,
    AudioBlob,
    Broadcast,
    BroadcastGroup,
    BroadcastStatus,
    CallAttempt,
    CallOutcome,
    Command,
    CommandStatus,
    Installation,
    Language,
    License,
    PbxGroup,
    PbxGroupMember,
    PbxSettings,
    PbxUser,
    Role,
    Tenant,
    User,
)
from api.runtime import Runtime
from api.security import hash_password, hash_token
from api.services import auth

PASSWORD = "correct horse battery"
PIN = "4711"
_HASH = hash_password(PASSWORD)


def agent_token(tenant_name: str) -> str:
    return "rda_" + tenant_name.lower().replace(" ", "-")


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x10" * int(seconds * rate))
    return buffer.getvalue()


@dataclass
class TenantData:
    tenant_id: uuid.UUID
    admin_email: str
    viewer_email: str
    users: list[uuid.UUID]
    group_id: uuid.UUID  # a broadcast group
    plain_group_id: uuid.UUID  # not a broadcast group
    broadcast_group_id: uuid.UUID
    audio_id: uuid.UUID
    announcement_id: uuid.UUID
    broadcast_id: uuid.UUID
    command_id: uuid.UUID
    license_id: uuid.UUID
    installation_id: uuid.UUID
    admin_user_id: uuid.UUID
    viewer_user_id: uuid.UUID


@dataclass
class World:
    platform_email: str
    platform_user_id: uuid.UUID
    a: TenantData  # the owner's tenant
    b: TenantData  # the outsider's tenant
    tokens: dict[str, str]


async def _tenant(rt: Runtime, name: str, domain: str) -> TenantData:
    now = rt.clock()
    async with rt.db.transaction() as s:
        tenant = Tenant(name=name, language=Language.DE, contact_email=f"it@{domain}")
        s.add(tenant)
        await s.flush()
        t = tenant.id
        admin = User(
            tenant_id=t,
            email=f"admin@{domain}",
            name="Admin",
            role=Role.TENANT_ADMIN,
            password_hash=_HASH,
        )
        viewer = User(
            tenant_id=t,
            email=f"viewer@{domain}",
            name="Viewer",
            role=Role.TENANT_VIEWER,
            password_hash=_HASH,
        )
        lic = License(
            tenant_id=t,
            key_hash=hash_token(f"key-{name}"),
            key_prefix="rdl_x",
            seats=50,
            valid_until=now + timedelta(days=365),
        )
        s.add_all([admin, viewer, lic])
        await s.flush()
        inst = Installation(
            tenant_id=t,
            license_id=lic.id,
            hostname=f"swyx.{domain}",
            token_hash=hash_token(agent_token(name)),
            agent_version="0.1.0",
            last_heartbeat_at=now,
            participant_count=3,
            pbx_reachable=True,
            jobservice_reachable=True,
            alarm_service_ok=True,
        )
        s.add(
            PbxSettings(
                tenant_id=t,
                host=f"swyx.{domain}",
                admin_user="swyxadmin",
                admin_password_sealed=rt.box.seal("pbx-secret"),
                poll_interval_seconds=60,
                broadcast_timeout_seconds=300,
            )
        )
        # As of the test's clock: a snapshot is applied only if not older (mirror.py).
        users = [
            PbxUser(
                tenant_id=t,
                pbx_id=f"u{i}",
                name=f"Member {i}",
                extension=f"2{i:02d}",
                state=2,
                synced_at=now,
            )
            for i in range(3)
        ]
        agent = PbxUser(
            tenant_id=t,
            pbx_id="agent",
            name="Rundruf Brandschutz",
            extension="299",
            callrouting_only=True,
            synced_at=now,
        )
        group = PbxGroup(tenant_id=t, pbx_id="g1", name="Brandschutz", synced_at=now)
        plain = PbxGroup(tenant_id=t, pbx_id="g2", name="Empfang", synced_at=now)
        s.add_all([inst, *users, agent, group, plain])
        await s.flush()
        s.add_all([PbxGroupMember(group_id=group.id, user_id=u.id, tenant_id=t) for u in users])
        bg = BroadcastGroup(
            tenant_id=t,
            group_id=group.id,
            agent_user_id=agent.id,
            agent_name=agent.name,
            agent_extension="299",
            pin_sealed=rt.box.seal(PIN),
        )
        data = wav_bytes()
        blob_id = uuid.uuid4()
        blob = AudioBlob(
            id=blob_id,
            # 8 kHz mono 16-bit in a plain header: its own telephony master.
            telephony_id=blob_id,
            tenant_id=t,
            content_type="audio/wav",
            size_bytes=len(data),
            sha256="0" * 64,
            duration_ms=500,
            data=data,
        )
        s.add_all([bg, blob])
        await s.flush()
        ann = Announcement(
            tenant_id=t,
            broadcast_group_id=bg.id,
            kind=AnnouncementKind.ALARM,
            source=AnnouncementSource.UPLOAD,
            status=AnnouncementStatus.READY,
            audio_id=blob.id,
            telephony_id=blob.id,
            duration_ms=500,
            sha256="0" * 64,
            updated_at=now,
        )
        broadcast = Broadcast(
            tenant_id=t,
            broadcast_group_id=bg.id,
            installation_id=inst.id,
            agent_broadcast_id=str(uuid.uuid4()),
            group_name=group.name,
            mode=2,
            trigger_caller_number="100",
            status=BroadcastStatus.COMPLETED,
            started_at=now - timedelta(minutes=5),
            member_count=3,
        )
        command = Command(
            tenant_id=t,
            type="syncDirectory",
            payload={},
            status=CommandStatus.SUCCEEDED,
            created_at=now,
            expires_at=now + timedelta(minutes=15),
        )
        s.add_all([ann, broadcast, command])
        await s.flush()
        s.add_all(
            [
                CallAttempt(
                    tenant_id=t,
                    broadcast_id=broadcast.id,
                    member_user_id=u.id,
                    member_pbx_id=u.pbx_id,
                    member_name=u.name,
                    member_extension=u.extension,
                    attempt_no=1,
                    started_at=now,
                    outcome=CallOutcome.CONFIRMED,
                )
                for u in users
            ]
        )
        return TenantData(
            tenant_id=t,
            admin_email=admin.email,
            viewer_email=viewer.email,
            users=[u.id for u in users],
            group_id=group.id,
            plain_group_id=plain.id,
            broadcast_group_id=bg.id,
            audio_id=blob.id,
            announcement_id=ann.id,
            broadcast_id=broadcast.id,
            command_id=command.id,
            license_id=lic.id,
            installation_id=inst.id,
            admin_user_id=admin.id,
            viewer_user_id=viewer.id,
        )


async def build_world(rt: Runtime) -> World:
    async with rt.db.transaction() as s:
        pa = User(
            tenant_id=None,
            email="ops@rundruf.example",
            name="Ops",
            role=Role.PLATFORM_ADMIN,
            password_hash=_HASH,
        )
        s.add(pa)
        await s.flush()
        pa_id = pa.id
    a = await _tenant(rt, "Owner AG", "owner.example")
    b = await _tenant(rt, "Outsider GmbH", "outsider.example")
    tokens = {}
    for role, email in (
        ("platform", "ops@rundruf.example"),
        ("owner", a.admin_email),
        ("viewer", a.viewer_email),
        ("outsider", b.admin_email),
    ):
        tokens[role] = (await auth.login(rt, email, PASSWORD, f"10.0.0.{len(tokens)}")).token
    # The installations' agent tokens ("rda_…" like real ones).
    tokens["agent_a"] = agent_token("Owner AG")
    tokens["agent_b"] = agent_token("Outsider GmbH")
    tokens["license_a"] = "key-Owner AG"
    tokens["license_b"] = "key-Outsider GmbH"
    return World(
        platform_email="ops@rundruf.example", platform_user_id=pa_id, a=a, b=b, tokens=tokens
    )
