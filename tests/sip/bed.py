"""The SIP test bed: SIPp and baresip as the members and the PBX of our user agent.

Each peer is its own process on free loopback ports, started per test, with its files
(a copy of the scenario, the pcaps it plays, message traces, recordings) in a folder
of the test's tmp_path. The SIPp scenarios are in `scenarios/`; README.md says what
each one does.

Tests that need SIPp or baresip skip when they are missing on a developer machine and
fail when RUNDRUF_REQUIRE_SERVICES=1 (as `make test` and CI set it), like need_postgres.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest

from tests.processes import wait_until
from tests.sip.lifetime import Closed, Started

HOST = "127.0.0.1"
REALM = "rundruf.test"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# A SIPp step: 200 OK, no body, to the request just received (a BYE, an INFO).
OK_TO_LAST = """  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""
# Debian's sip-tester ships SIPp's own pcaps (dtmf_2833_*.pcap, g711a.pcap) here.
SIPP_SHARE = Path("/usr/share/sip-tester")
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
REQUIRE = os.environ.get("RUNDRUF_REQUIRE_SERVICES") == "1"

# -key values every SIPp run gets (a scenario uses the ones it names, e.g. [realm]).
# The INVITE challenge is MD5 and the registrar's SHA-256 unless a test says otherwise.
_SCENARIO_KEYS = {"uas_auth.xml": {"algorithm": "MD5"}}
_DEFAULT_ALGORITHM = "SHA-256"


# ------------------------------------------------------------------ requirements


def _need(available: bool, what: str) -> None:
    if available:
        return
    if REQUIRE:
        pytest.fail(f"{what} is required but missing (run `bash ops/ensure-services.sh`)")
    pytest.skip(f"{what} is missing")


def need_sipp() -> None:
    _need(shutil.which("sipp") is not None, "SIPp (Debian package sip-tester)")


def need_baresip() -> None:
    _need(shutil.which("baresip") is not None and BARESIP_MODULES.is_dir(), "baresip")


def _can_send_raw() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
        return True
    except PermissionError:
        pass
    sipp = shutil.which("sipp")
    try:
        return sipp is not None and bool(os.getxattr(sipp, "security.capability"))
    except OSError:
        return False


def need_pcap_play() -> None:
    """SIPp plays pcaps through a raw socket: root, or `setcap cap_net_raw+ep` on sipp."""
    need_sipp()
    _need(_can_send_raw(), "raw sockets for SIPp's play_pcap_audio (root or cap_net_raw on sipp)")


# ------------------------------------------------------------------------ ports


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _udp_free(port: int, host: str = HOST) -> bool:
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _tcp_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_udp_port(span: int = 1, host: str = HOST) -> int:
    """A UDP port p on `host` (loopback, IPv4 or IPv6) with p .. p+span-1 free (SIPp's
    media takes p and p + 2)."""
    for _ in range(100):
        with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port + span < 65536 and all(_udp_free(port + i, host) for i in range(1, span)):
            return port
    raise RuntimeError(f"no {span} free UDP ports in a row on {host}")


def free_sip_port() -> int:
    """A loopback port free for both UDP and TCP."""
    for _ in range(100):
        port = free_udp_port()
        if _tcp_free(port):
            return port
    raise RuntimeError(f"no port free for UDP and TCP on {HOST}")


def _udp_bound(port: int) -> bool:
    # Read the kernel's table instead of binding the port ourselves (which could
    # take it from under the process that is starting).
    needle = f"{socket.htonl(0x7F000001):08X}:{port:04X}"
    with open("/proc/net/udp") as table:
        return any(line.split()[1] == needle for line in list(table)[1:])


def _tcp_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


# ----------------------------------------------------------- RTP, DTMF and pcaps


@dataclass(frozen=True)
class RtpPacket:
    """An RTP packet (RFC 3550 section 5.1); CSRCs, extension and padding are skipped."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise ValueError(f"RTP packet of {len(data)} bytes is shorter than its header")
        first, second, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        if first >> 6 != 2:
            raise ValueError(f"RTP version {first >> 6}, expected 2")
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            (words,) = struct.unpack("!H", data[offset + 2 : offset + 4])
            offset += 4 + 4 * words
        end = len(data) - (data[-1] if first & 0x20 else 0)
        return cls(second & 0x7F, sequence, timestamp, ssrc, data[offset:end], bool(second & 0x80))

    def __bytes__(self) -> bytes:
        second = (0x80 if self.marker else 0) | self.payload_type
        header = struct.pack("!BBHII", 0x80, second, self.sequence, self.timestamp, self.ssrc)
        return header + self.payload


DTMF_EVENTS = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}


@dataclass(frozen=True)
class TelephoneEvent:
    """An RFC 4733 telephone-event payload (section 2.3); DTMF digits are events 0-15."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) != 4:
            raise ValueError(f"telephone-event payload of {len(payload)} bytes, expected 4")
        event, flags, duration = struct.unpack("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )


TimedPacket = tuple[float, RtpPacket]  # seconds from the first packet, packet


def dtmf_packets(
    digit: str, payload_type: int = 101, duration_ms: int = 160, ssrc: int = 0x52554E44
) -> list[TimedPacket]:
    """One digit as RFC 4733 section 2.5 sends it: a packet every 20 ms with the duration
    so far, all with the event's start timestamp, the first with the marker bit, and the
    end packet three times (2.5.1.4)."""
    event, steps = DTMF_EVENTS[digit], max(1, duration_ms // 20)
    packets = []
    for i in range(steps + 2):
        step = min(i + 1, steps)
        payload = TelephoneEvent(event, i + 1 >= steps, 10, step * 160)
        packet = RtpPacket(payload_type, 1 + i, 8000, ssrc, bytes(payload), marker=i == 0)
        packets.append((0.02 * i, packet))
    return packets


def ulaw(sample: int) -> int:
    """A 16-bit sample as G.711 mu-law (ITU-T G.711, as the reference 14-bit encoder)."""
    mask, value = (0xFF, sample >> 2) if sample >= 0 else (0x7F, -(sample >> 2))
    value = min(value, 8159) + 0x21
    segment = (value >> 6).bit_length()
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def alaw(sample: int) -> int:
    """A 16-bit sample as G.711 A-law."""
    mask, value = (0xD5, sample >> 3) if sample >= 0 else (0x55, (-sample - 1) >> 3)
    segment = (value >> 5).bit_length()
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0x0F)) ^ mask


def tone_packets(
    seconds: float = 2.0, frequency: float = 440.0, payload_type: int = 0, ssrc: int = 0x544F4E45
) -> list[TimedPacket]:
    """A sine tone at half scale as 20 ms G.711 packets (payload type 0 PCMU or 8 PCMA)."""
    encode = {0: ulaw, 8: alaw}[payload_type]
    packets = []
    for i in range(int(seconds * 50)):
        samples = range(160 * i, 160 * (i + 1))
        level = [int(16000 * math.sin(2 * math.pi * frequency * n / 8000)) for n in samples]
        packet = RtpPacket(payload_type, 1 + i, 160 * i, ssrc, bytes(map(encode, level)), i == 0)
        packets.append((0.02 * i, packet))
    return packets


def _checksum(data: bytes) -> int:
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2))
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, packets: Iterable[TimedPacket]) -> Path:
    """A libpcap file of Ethernet/IPv4/UDP frames, as SIPp's play_pcap_audio reads them.

    SIPp keeps only the UDP part and the timing: it sends from its -mi/-mp address to
    the media address of the peer's SDP, so the addresses here are placeholders.
    """
    src, dst = socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.2")
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for seconds, packet in packets:
        rtp = bytes(packet)
        udp = struct.pack("!HHHH", 49170, 49172, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + udp
        usec = round(seconds * 1_000_000)
        out.append(
            struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        )
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def read_pcap(path: Path) -> list[TimedPacket]:
    """The RTP packets of a little-endian Ethernet/IPv4/UDP pcap (SIPp's and ours)."""
    data = path.read_bytes()
    magic, *_, linktype = struct.unpack("<IHHiIII", data[:24])
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise ValueError(f"{path.name}: not a little-endian Ethernet pcap")
    packets, offset, start = [], 24, None
    while offset < len(data):
        sec, usec, length, _ = struct.unpack("<IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = frame[14:]
        udp = ip[4 * (ip[0] & 0x0F) :]
        start = sec + usec / 1e6 if start is None else start
        packets.append((sec + usec / 1e6 - start, RtpPacket.parse(udp[8:])))
    return packets


def dtmf_pcap(path: Path, digit: str = "1", payload_type: int = 101) -> Path:
    return write_pcap(path, dtmf_packets(digit, payload_type))


def tone_pcap(
    path: Path, seconds: float = 2.0, frequency: float = 440.0, payload_type: int = 0
) -> Path:
    return write_pcap(path, tone_packets(seconds, frequency, payload_type))


def _provide_pcap(name: str, target: Path) -> None:
    """The pcaps the scenarios name: SIPp's DTMF pcaps (or ours if none ship), our tones."""
    digit = re.fullmatch(r"dtmf_2833_(\d|star|pound)\.pcap", name)
    if digit:
        shipped = SIPP_SHARE / name
        if shipped.is_file():
            shutil.copyfile(shipped, target)
        else:
            dtmf_pcap(target, {"star": "*", "pound": "#"}.get(digit[1], digit[1]))
    elif name in ("tone_pcmu.pcap", "tone_pcma.pcap"):
        tone_pcap(target, payload_type=0 if name == "tone_pcmu.pcap" else 8)
    else:
        raise ValueError(f"no pcap named {name}: pass it in media={{...}}")


class RtpSink(Closed):
    """A UDP socket on loopback that keeps the RTP packets it receives (the test's ears)
    and when each arrived (time.time()); put its `port` in an SDP offer (SippUac's
    keys={"rtp_port": ...})."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.packets: list[RtpPacket] = []
        self.arrived: list[float] = []  # of each of `packets`
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.time()
            with contextlib.suppress(ValueError):
                self.packets.append(RtpPacket.parse(data))
                self.arrived.append(at)

    def between(self, start: float, end: float) -> list[RtpPacket]:
        """The packets that arrived from `start` until before `end` (time.time())."""
        return [p for p, at in zip(self.packets, self.arrived, strict=True) if start <= at < end]

    def send(self, packet: RtpPacket, port: int) -> None:
        """Sends from this socket, so that an echo comes back here."""
        self.sock.sendto(bytes(packet), (HOST, port))

    def events(self, payload_type: int = 101) -> list[TelephoneEvent]:
        return [
            TelephoneEvent.parse(p.payload) for p in self.packets if p.payload_type == payload_type
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# ---------------------------------------------------------------------- processes


class _Process(Started):
    """A peer process of the bed: a context manager that starts it and stops it."""

    process: subprocess.Popen[bytes] | None = None
    stop_wait_s = 5.0  # from SIGTERM to SIGKILL
    # A process with children of its own (Kamailio) runs in a session of its own; stop()
    # then kills the whole group, since a child left behind would keep the port.
    own_group = False

    def _spawn(self, command: list[str], cwd: Path, log: Path) -> None:
        (cwd / "command").write_text(" ".join(command) + "\n")
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_group,
            )

    def stop(self) -> int | None:
        """Ends the process (SIGTERM, then SIGKILL after `stop_wait_s`); its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_wait_s)
            except subprocess.TimeoutExpired:
                self._kill()
                self.process.wait(5)
        if self.own_group:
            self._kill()
        return self.process.returncode

    def _kill(self) -> None:
        assert self.process is not None
        if not self.own_group:
            self.process.kill()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


# ------------------------------------------------------------------------- SIPp

_TRACE_ENTRY = re.compile(r"^-{10,} [^\n]*\n\w+ message (received|sent) [^\n]*\n\n", re.MULTILINE)


class _Sipp(_Process):
    """One SIPp in the foreground (-nostdin), its files in tmp_path/sipp-<role>-<port>."""

    role = "sipp"

    def __init__(
        self,
        scenario: str,
        tmp_path: Path,
        *,
        port: int | None,
        calls: int,
        media_port: int | None,
        keys: Mapping[str, str] | None,
        media: Mapping[str, Path] | None,
        transport: str,
        timeout: float,
    ) -> None:
        self.scenario = scenario
        self.port = port or free_sip_port()
        # SIPp binds the audio port and the video port two above it.
        self.media_port = media_port or free_udp_port(span=4)
        self.control_port = free_udp_port()
        self.calls = calls
        self.transport = transport
        self.timeout = timeout
        self.dir = tmp_path / f"sipp-{self.role}-{self.port}"
        self.keys = {
            "realm": REALM,
            "nonce": secrets.token_hex(16),
            "algorithm": _DEFAULT_ALGORITHM,
            "expires": "3600",
            "rtp_port": str(self.media_port),
            **_SCENARIO_KEYS.get(scenario, {}),
            **(keys or {}),
        }
        self.media = dict(media or {})

    @property
    def message_log(self) -> Path:
        return self.dir / "messages.log"

    @property
    def error_log(self) -> Path:
        return self.dir / "errors.log"

    def _scenario_args(self) -> list[str]:
        """-sf with a copy of the scenario beside its pcaps, or -sn for SIPp's own."""
        if not self.scenario.endswith(".xml"):
            return ["-sn", self.scenario]
        source = Path(self.scenario) if os.sep in self.scenario else SCENARIOS / self.scenario
        text = source.read_text()
        copy = self.dir / source.name
        copy.write_text(text)
        for name in re.findall(r'play_pcap_audio="([^"]+)"', text):
            if name in self.media:
                shutil.copyfile(self.media[name], self.dir / name)
            else:
                _provide_pcap(name, self.dir / name)
        return ["-sf", str(copy)]

    def _args(self) -> list[str]:
        args = [
            *self._scenario_args(),
            *("-i", HOST, "-p", str(self.port), "-bind_local"),
            *("-t", {"udp": "u1", "tcp": "t1"}[self.transport]),
            *("-mi", HOST, "-mp", str(self.media_port)),
            *("-ci", HOST, "-cp", str(self.control_port)),
            *("-m", str(self.calls), "-nostdin"),
            *("-timeout", f"{self.timeout:g}s", "-timeout_error"),
            *("-trace_msg", "-message_file", str(self.message_log)),
            *("-trace_err", "-error_file", str(self.error_log)),
            *("-trace_screen", "-screen_file", str(self.dir / "screen.log")),
            *("-trace_logs", "-log_file", str(self.dir / "actions.log")),
        ]
        for key, value in self.keys.items():
            args += ["-key", key, value]
        return args

    def start(self) -> Self:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._spawn(["sipp", *self._args()], self.dir, self.dir / "stdout.log")
        return self

    def _check_alive(self) -> None:
        assert self.process is not None, "not started"
        if self.process.poll() is not None:
            code = self.process.returncode
            raise AssertionError(f"SIPp ({self.scenario}) exited with {code}:\n{self.log()}")

    def log(self) -> str:
        """SIPp's unexpected-message log and the end of its screen, for failure messages."""
        parts = [p.read_text(errors="replace") for p in (self.error_log,) if p.exists()]
        out = self.dir / "stdout.log"
        if out.exists():
            parts.append(out.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def messages(self) -> str:
        """The SIP messages SIPp sent and received so far, as SIPp traces them (with CRLF)."""
        if not self.message_log.exists():
            return ""
        return self.message_log.read_bytes().decode(errors="replace")

    def _entries(self) -> list[tuple[str, str]]:
        trace = self.messages()
        marks = list(_TRACE_ENTRY.finditer(trace))
        ends = [m.start() for m in marks[1:]] + [len(trace)]
        return [(m[1], trace[m.end() : end]) for m, end in zip(marks, ends, strict=True)]

    def flow(self) -> list[str]:
        """The messages in order, short: '< INVITE' received, '> 180' sent."""
        flow = []
        for direction, message in self._entries():
            words = message.split(None, 2)
            word = words[1] if words[0].startswith("SIP/") else words[0]
            flow.append(("< " if direction == "received" else "> ") + word)
        return flow

    def find(self, start: str) -> list[str]:
        """The traced messages whose first line starts with `start` ("INFO", "SIP/2.0 401")."""
        return [message for _, message in self._entries() if message.startswith(start)]

    def wait(self, timeout: float = 30) -> int:
        """SIPp's exit code: 0 when all calls succeeded, 1 when some failed (`man sipp`)."""
        assert self.process is not None, "not started"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"SIPp ({self.scenario}) still runs after {timeout} s; flow so far: {self.flow()}"
            ) from None


class SippUas(_Sipp):
    """SIPp answering as a member (or the PBX's registrar) on sip:member@127.0.0.1:<port>.

    `scenario` is a file in scenarios/ (or a path, or a SIPp built-in such as "uas");
    `keys` are SIPp -key values ([realm], [nonce], [algorithm], [expires]); `media` maps a
    pcap name a scenario plays to a file; `rtp_echo` sends the caller's RTP back to it.
    The context manager starts SIPp and returns once it listens.
    """

    role = "uas"

    def __init__(
        self,
        scenario: str,
        tmp_path: Path,
        port: int | None = None,
        calls: int = 1,
        media_port: int | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        media: Mapping[str, Path] | None = None,
        rtp_echo: bool = False,
        auto_answer: bool = True,
        transport: str = "udp",
        timeout: float = 60,
    ) -> None:
        super().__init__(
            scenario,
            tmp_path,
            port=port,
            calls=calls,
            media_port=media_port,
            keys=keys,
            media=media,
            transport=transport,
            timeout=timeout,
        )
        self.rtp_echo = rtp_echo
        self.auto_answer = auto_answer

    @property
    def uri(self) -> str:
        params = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:member@{HOST}:{self.port}{params}"

    def _args(self) -> list[str]:
        # -aa: 200 to INFO, NOTIFY, OPTIONS and UPDATE the scenario does not expect.
        return [*super()._args(), *(["-rtp_echo"] * self.rtp_echo), *(["-aa"] * self.auto_answer)]

    def _listening(self) -> bool:
        self._check_alive()
        return _tcp_listening(self.port) if self.transport == "tcp" else _udp_bound(self.port)

    def start(self) -> Self:
        super().start()
        wait_until(self._listening, 10, f"SIPp {self.scenario} on {self.port}")
        return self


class SippUac(_Sipp):
    """SIPp calling `target` ("sip:member@127.0.0.1:5060" or "127.0.0.1:5060"); its
    `transport` must be the target's.

    `scenario` is a file in scenarios/ or SIPp's built-in "uac"; `rate` calls per second
    (SIPp's -r), at most `limit` at once (-l); `auth` the (user, password) SIPp answers
    digest challenges with ([authentication] in a scenario).
    """

    role = "uac"

    def __init__(
        self,
        target: str,
        tmp_path: Path,
        scenario: str = "uac_call.xml",
        port: int | None = None,
        calls: int = 1,
        media_port: int | None = None,
        *,
        rate: float | None = None,
        limit: int | None = None,
        auth: tuple[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
        media: Mapping[str, Path] | None = None,
        transport: str = "udp",
        timeout: float = 60,
    ) -> None:
        super().__init__(
            scenario,
            tmp_path,
            port=port,
            calls=calls,
            media_port=media_port,
            keys=keys,
            media=media,
            transport=transport,
            timeout=timeout,
        )
        user, _, address = target.removeprefix("sip:").rpartition("@")
        self.remote = address.split(";")[0]
        self.service = user or "member"
        self.rate = rate
        self.limit = limit
        self.auth = auth

    def _args(self) -> list[str]:
        args = [self.remote, *super()._args(), "-s", self.service]
        if self.rate is not None:
            args += ["-r", f"{self.rate:g}", "-rp", "1000"]
        if self.limit is not None:
            args += ["-l", str(self.limit)]
        if self.auth is not None:
            args += ["-au", self.auth[0], "-ap", self.auth[1]]
        return args


# ---------------------------------------------------------------------- baresip


def _free_baresip_port() -> int:
    # baresip 1.0 listens on TCP port + 1 as well (it does not say what for).
    for _ in range(100):
        port = free_sip_port()
        if _tcp_free(port + 1):
            return port
    raise RuntimeError(f"no two free ports in a row on {HOST}")


class Baresip(_Process):
    """baresip as a member's phone on sip:<user>@127.0.0.1:<port> (UDP and TCP).

    It answers by itself (`answermode`: auto, early or manual), speaks G.711 only, has no
    sound card: the aubridge module is its player and its microphone, so it echoes what
    it hears, and the sndfile module writes each call's audio to WAV files (8 kHz mono):
    `recordings()` are those it received (`dump-<time>-dec.wav`; `-enc.wav` what it
    sent). The account does not register anywhere (regint=0).
    """

    def __init__(
        self,
        tmp_path: Path,
        port: int | None = None,
        *,
        user: str = "member",
        answermode: str = "auto",
        max_seconds: int = 300,
        mediaenc: str | None = None,
    ) -> None:
        self.port = port or _free_baresip_port()
        self.user = user
        self.answermode = answermode
        # SRTP (its srtp module, SDES): "srtp" best effort, "srtp-mand" RTP/SAVP only.
        self.mediaenc = mediaenc
        self.control_port = free_sip_port()  # ctrl_tcp: commands such as a DTMF key
        self.max_seconds = max_seconds  # baresip -t: it quits by itself if a test leaks it
        self.dir = tmp_path / f"baresip-{self.port}"

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "baresip.log"

    def _config(self) -> str:
        rtp = free_udp_port(span=10)
        return "\n".join(
            [
                "poll_method\tepoll",
                f"sip_listen\t{HOST}:{self.port}",
                # An address, not an interface name: baresip 1.0 finds no address for "lo".
                f"net_interface\t{HOST}",
                "call_local_timeout\t120",
                "call_max_calls\t4",
                "audio_player\taubridge,rundruf",
                "audio_source\taubridge,rundruf",
                "audio_alert\taubridge,rundruf",
                "audio_level\tno",
                f"rtp_ports\t{rtp}-{rtp + 9}",
                f"module_path\t{BARESIP_MODULES}",
                "module\tg711.so",
                *(["module\tsrtp.so"] if self.mediaenc else []),
                "module\tsndfile.so",
                "module\taubridge.so",
                "module_tmp\taccount.so",
                "module_app\tmenu.so",
                "module_app\tctrl_tcp.so",
                f"ctrl_tcp_listen\t{HOST}:{self.control_port}",
                "statmode_default\toff",
                f"snd_path\t{self.dir / 'recordings'}",
                "",
            ]
        )

    def start(self) -> Self:
        (self.dir / "recordings").mkdir(parents=True, exist_ok=True)
        (self.dir / "config").write_text(self._config())
        account = f"<sip:{self.user}@{HOST}>;regint=0;answermode={self.answermode}"
        if self.mediaenc:
            account += f";mediaenc={self.mediaenc}"
        (self.dir / "accounts").write_text(f"{account};audio_codecs=PCMU,PCMA\n")
        command = ["baresip", "-f", str(self.dir), "-t", str(self.max_seconds)]
        self._spawn(command, self.dir, self.log_file)
        wait_until(self._ready, 10, f"baresip on {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"baresip exited with {self.process.returncode}:\n{self.log()}")
        return "baresip is ready" in self.log() and _tcp_listening(self.port)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def command(self, command: str, params: str = "") -> str:
        """Runs a baresip command through its ctrl_tcp module (JSON in a netstring),
        e.g. ``command("sndcode", "1")``: the key 1 on the current call (RFC 4733 when
        the call has telephone-events). Returns baresip's answer."""
        body = json.dumps({"command": command, "params": params, "token": "rundruf"}).encode()
        with socket.create_connection((HOST, self.control_port), timeout=5) as control:
            control.sendall(str(len(body)).encode() + b":" + body + b",")
            answer = b""
            while not answer.endswith(b","):
                chunk = control.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer.decode(errors="replace")

    def recordings(self) -> list[Path]:
        """WAVs of the audio baresip received, one per call (names have the second the
        call started: two calls in the same second share one file)."""
        return sorted((self.dir / "recordings").glob("dump-*-dec.wav"))
