"""What an installation runs on and its SIP registration, as the website reads them."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from api import models
from schema.enums import SipRegistrationState


@strawberry.type(description="Why the SIP dialer's registration last failed.")
class SipError:
    code: str = strawberry.field(
        description="refused, credentialsRefused, notGranted, timeout, challengeUnsupported, "
        "network, unresolvable, localAddress, internal (or a newer agent's code): the "
        "website puts it into words."
    )
    params: JSON = strawberry.field(description="What the words need, e.g. status and reason.")
    detail: str | None = strawberry.field(description="The agent's own text, for support.")
    at: datetime


@strawberry.type(description="The SIP dialer's registration at the PBX.")
class SipRegistration:
    state: SipRegistrationState
    since: datetime = strawberry.field(description="When it entered this state.")
    last_error: SipError | None = strawberry.field(
        description="The last failure, kept after a later success."
    )


def sip_registration_of(i: models.Installation) -> SipRegistration | None:
    if i.sip_registration is None or i.sip_registration_since is None:
        return None
    error = None
    if i.sip_error_code is not None and i.sip_error_at is not None:
        error = SipError(
            code=i.sip_error_code,
            params=cast(JSON, i.sip_error_params or {}),
            detail=i.sip_error_detail,
            at=i.sip_error_at,
        )
    return SipRegistration(
        state=i.sip_registration, since=i.sip_registration_since, last_error=error
    )


def simulated(i: models.Installation) -> bool:
    """Runs the SwyxWare simulator or simulated calls: never a real customer's alarm."""
    return i.pbx_adapter is models.PbxAdapter.SIM or i.dialer is models.DialerKind.SIM
