"""What every use case needs, wired once by ``api.bootstrap``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from api.db import Database
from api.models.base import utcnow
from api.pubsub import Hub
from api.security import SecretBox
from api.settings import Settings
from api.tasks import Tasks


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox
    # Tests hand in a controllable clock; everything else asks this one.
    clock: Callable[[], datetime] = field(default=utcnow)
    hub: Hub = field(default_factory=Hub)
    # Wakes the workers after a commit (api/tasks.py); none on the embedded default.
    tasks: Tasks = field(default_factory=Tasks)
