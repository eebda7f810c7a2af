"""Cursors of the keyset-paged lists (broadcast history, audit log): a time and an id.

Opaque to the client; anything that is not one of ours is BAD_USER_INPUT on `after`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from api.errors import BadInput


def encode_cursor(at: datetime, ident: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = datetime.fromisoformat(at)
        ident_ = uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput("not a cursor of this list", field="after") from None
    # A time without a zone cannot be compared with the stored ones (Postgres refuses).
    if moment.tzinfo is None:
        raise BadInput("not a cursor of this list", field="after")
    return moment, ident_
