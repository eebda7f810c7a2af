"""The one check every text of a request body passes, for jobs and notices alike.

What the routing script sends ends up in job files, the agent's broadcast reports and the
central service's database, which refuses NUL; a lone surrogate (JSON's "\\ud800" decodes
to one) is no UTF-8 at all. Refused here, with a code a program can act on, rather than
stopping the agent's report later. The agent's and the central service's rules are the
same (api/domain/validation.py `input_text`; this package imports nothing of theirs).
"""

from __future__ import annotations

import re

from swyx_jobservice.errors import BadRequest

INVALID_TEXT = "invalidText"
# C0, DEL and C1: nothing the routing script sends spans lines or carries terminal codes.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def checked_text(value: str, name: str, max_len: int) -> str:
    """`value` unless it is longer than `max_len` characters, holds a control character or
    a lone surrogate: then a BadRequest with the code invalidText naming `name`."""
    if len(value) > max_len:
        raise BadRequest(f"{name} is longer than {max_len} characters", name, code=INVALID_TEXT)
    if _CONTROLS.search(value):
        raise BadRequest(f"{name} contains control characters", name, code=INVALID_TEXT)
    if _SURROGATES.search(value):
        raise BadRequest(f"{name} is not valid Unicode (a lone surrogate)", name, code=INVALID_TEXT)
    return value
