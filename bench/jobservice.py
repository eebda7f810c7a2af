"""The job service on loopback: accept latency (fsync included) and long-poll wake-up.

    .venv/bin/python bench/jobservice.py [--jobs 200] [--audio-seconds 5] [--dir PATH]

Starts ``python -m api.cli jobservice`` as a real process with its data folder
in a temporary folder (or under --dir: put it on the disk the PBX host uses,
since fsync dominates), then, one request at a time over keep-alive connections:

- POST /jobs, mode 2 (a small JSON body): --jobs samples; each answer comes
  after two fsyncs (the file, then its folder);
- POST /jobs, mode 3 with a WAV of --audio-seconds in the body (base64): four
  fsyncs (wav and folder, json and folder) and the WAV check;
- POST -> long poll: a GET /jobs?wait=30 is waiting, the POST is sent, and the
  time until the poll's answer arrives is measured from the moment the POST was
  sent (it includes the POST's own fsyncs, since a job is announced only once it
  is on disk) and from the moment the POST's 201 arrived (the push itself);
- DELETE /jobs/{id}: tombstone written and fsynced, files unlinked, folder fsynced;
- two floors: a repeated POST (same key: parsed and answered, nothing written),
  the HTTP round trip; and write_atomic of one small file in this process, the disk.

Prints p50 / p99 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.files import write_atomic  # noqa: E402

AGENT = "bench-agent-token-0123456789"
ROUTING = "bench-routing-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * int(seconds * 8000))
    return buffer.getvalue()


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.2f}  p99 {p99:7.2f}  max {ms[-1]:7.2f}  (n={len(ms)})"


def body(key: str, mode: int = 2, recording: str | None = None) -> dict[str, object]:
    return {
        "agentNumber": "231",
        "mode": mode,
        "callerNumber": "100",
        "callerName": "Bench",
        "idempotencyKey": key,
        "recording": recording,
        "memberStates": {str(n): 0 for n in range(20)},
    }


async def timed(action: Callable[[], Awaitable[httpx.Response]], status: int) -> float:
    started = time.perf_counter()
    response = await action()
    elapsed = time.perf_counter() - started
    if response.status_code != status:
        raise SystemExit(f"unexpected {response.status_code}: {response.text}")
    return elapsed


async def stamped(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    response = await request
    return response, time.perf_counter()


async def run(url: str, jobs: int, audio_seconds: float, folder: Path) -> None:
    auth_r = {"Authorization": f"Bearer {ROUTING}"}
    auth_a = {"Authorization": f"Bearer {AGENT}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=auth_r, timeout=60) as routing,
        httpx.AsyncClient(base_url=url, headers=auth_a, timeout=60) as agent,
    ):
        for n in range(10):  # warm up connections and code paths
            await routing.post("/jobs", json=body(f"warm-{n}"))
        repeats = [
            await timed(lambda: routing.post("/jobs", json=body("warm-0")), 200)
            for _ in range(jobs)
        ]
        for job in (await agent.get("/jobs")).json()["jobs"]:
            await agent.delete(f"/jobs/{job['id']}")

        post2 = [
            await timed(lambda n=n: routing.post("/jobs", json=body(f"m2-{n}")), 201)
            for n in range(jobs)
        ]
        ids = [job["id"] for job in (await agent.get("/jobs")).json()["jobs"]]
        deletes = [await timed(lambda i=i: agent.delete(f"/jobs/{i}"), 204) for i in ids]

        audio = base64.b64encode(wav(audio_seconds)).decode()
        post3 = [
            await timed(lambda n=n: routing.post("/jobs", json=body(f"m3-{n}", 3, audio)), 201)
            for n in range(jobs)
        ]
        for job in (await agent.get("/jobs")).json()["jobs"]:
            await agent.delete(f"/jobs/{job['id']}")

        from_send, from_answer = [], []
        for n in range(jobs):
            poll = asyncio.create_task(agent.get("/jobs", params={"wait": 30}))
            await asyncio.sleep(0.01)  # the poll is waiting in the service
            sent = time.perf_counter()
            post = asyncio.create_task(stamped(routing.post("/jobs", json=body(f"wake-{n}"))))
            answered_poll = await poll
            polled = time.perf_counter()
            answered_post, posted = await post
            [job] = answered_poll.json()["jobs"]
            if job["id"] != answered_post.json()["id"]:
                raise SystemExit("the poll returned another job")
            from_send.append(polled - sent)
            # Negative when the poll's answer came in before the POST's own 201.
            from_answer.append(polled - posted)
            await agent.delete(f"/jobs/{job['id']}")

    floor = []
    for n in range(jobs):
        started = time.perf_counter()
        write_atomic(folder / "floor" / f"{n}.json", b"{}" * 150)
        floor.append(time.perf_counter() - started)

    print(f"{jobs} jobs; data folder {folder}\n")
    print(f"POST /jobs mode 2 (fsync)            {percentiles(post2)}")
    wav_kib = len(audio) * 3 // 4 // 1024
    print(f"POST /jobs mode 3, {audio_seconds:g} s WAV ({wav_kib} KiB) {percentiles(post3)}")
    print(f"POST sent -> long poll answered      {percentiles(from_send)}")
    print(f"long poll answer - POST 201 answer   {percentiles(from_answer)}")
    print(f"DELETE /jobs/{{id}} (tombstone)       {percentiles(deletes)}")
    print(f"floor: repeated POST (no disk write) {percentiles(repeats)}")
    print(f"floor: write_atomic in-process       {percentiles(floor)}")


def healthy(url: str) -> bool:
    try:
        headers = {"Authorization": f"Bearer {AGENT}"}
        return httpx.get(url + "/health", headers=headers, timeout=1).is_success
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--audio-seconds", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, help="parent of the data folder (default: temp)")
    args = parser.parse_args()
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="jobservice-bench-", dir=args.dir))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDRUF_")}
    env.update(
        PYTHONPATH=str(ROOT),
        RUNDRUF_JOBSERVICE_PORT=str(port),
        RUNDRUF_JOBSERVICE_DATA_DIR=str(folder / "data"),
        RUNDRUF_JOBSERVICE_AGENT_TOKEN=AGENT,
        RUNDRUF_JOBSERVICE_ROUTING_TOKEN=ROUTING,
        RUNDRUF_JOBSERVICE_LOG_LEVEL="WARNING",
    )
    log = folder / "jobservice.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "jobservice"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"job service did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        asyncio.run(run(url, args.jobs, args.audio_seconds, folder))
    finally:
        process.terminate()
        process.wait(10)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
