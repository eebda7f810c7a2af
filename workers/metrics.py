"""``GET /metrics`` of a worker process, in Prometheus' text format (version 0.0.4).

Counters are this process's since it started (Prometheus sums the processes);
gauges are read when scraped: each queue's depth from the broker, and the
outbox by status from the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class MailCounters:
    sent: int = 0
    failed: int = 0  # for good: permanent error or out of attempts
    retried: int = 0  # temporary errors, queued again
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, sent: int = 0, failed: int = 0, retried: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.failed += failed
            self.retried += retried


@dataclass(frozen=True)
class Snapshot:
    mails: MailCounters
    queue_depth: Mapping[str, int]
    outbox: Mapping[str, int]


def render(snapshot: Snapshot) -> str:
    lines = [
        "# HELP rundruf_worker_mails_sent_total Mails the SMTP server accepted.",
        "# TYPE rundruf_worker_mails_sent_total counter",
        f"rundruf_worker_mails_sent_total {snapshot.mails.sent}",
        "# HELP rundruf_worker_mails_failed_total Mails given up (permanent error, last attempt).",
        "# TYPE rundruf_worker_mails_failed_total counter",
        f"rundruf_worker_mails_failed_total {snapshot.mails.failed}",
        "# HELP rundruf_worker_mails_retried_total Temporary SMTP errors, tried again later.",
        "# TYPE rundruf_worker_mails_retried_total counter",
        f"rundruf_worker_mails_retried_total {snapshot.mails.retried}",
        "# HELP rundruf_worker_queue_depth Messages waiting in a worker queue.",
        "# TYPE rundruf_worker_queue_depth gauge",
        *(
            f'rundruf_worker_queue_depth{{queue="{_label(q)}"}} {n}'
            for q, n in sorted(snapshot.queue_depth.items())
        ),
        "# HELP rundruf_outbox_mails Mails in the outbox by status.",
        "# TYPE rundruf_outbox_mails gauge",
        *(
            f'rundruf_outbox_mails{{status="{_label(s)}"}} {n}'
            for s, n in sorted(snapshot.outbox.items())
        ),
    ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer:
    """A small HTTP listener on 127.0.0.1 that answers ``GET /metrics`` and nothing else."""

    def __init__(self, port: int, snapshot: Callable[[], Snapshot]) -> None:
        collect = snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                try:
                    body = render(collect()).encode()
                except Exception:
                    log.exception("metrics could not be collected")
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worker-metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
