"""Run as a process: one mail sweep that dies right after the SMTP server accepted a mail.

It stands for a worker killed between the server's 250 and the ``sent`` update
(the delivery log line is written by then, as in production).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from api.bootstrap import bootstrap
from api.settings import load_settings
from workers.delivery_log import DeliveryLog
from workers.mail import Mailer

EXIT_CODE = 17


async def _die(self: Mailer, mail: Any) -> None:
    os._exit(EXIT_CODE)


async def main() -> None:
    rt = bootstrap(load_settings())
    Mailer._mark_sent = _die  # type: ignore[method-assign]
    await Mailer(rt, DeliveryLog(rt.settings.worker_state_dir)).sweep()


if __name__ == "__main__":
    asyncio.run(main())
