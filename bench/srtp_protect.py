"""What SRTP costs per packet: libsrtp (pylibsrtp) protecting and checking G.711 packets.

    .venv/bin/python bench/srtp_protect.py [--packets 200000] [--streams 500]

- protect / unprotect: µs per 172-byte RTP packet (12-byte header, 160 bytes of
  PCMA: 20 ms), one call's `SrtpStreams`, the best of five runs;
- `CallCrypto.outgoing` / `incoming`: the same through the call's own wrapper, as
  `Call.send_rtp` and `Call.on_rtp` call it for every packet;
- a pacer slot: `--streams` calls' packets built (`RtpStream._advance`) with and
  without protecting them, per 20 ms interval (what SRTP adds to the burst the
  pacer sends; the sends themselves are bench/rtp_pacing.py's).

The share of one core is the per-packet cost times 50 packets a second per call,
both ways, for `--streams` calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_agent.sip import sdp_crypto  # noqa: E402
from edge_agent.sip.pacer import RtpStream  # noqa: E402
from edge_agent.sip.rtp import RtpPacket  # noqa: E402
from edge_agent.sip.srtp import CallCrypto, SrtpStreams, new_key  # noqa: E402

RUNS = 5


def packets(count: int) -> list[bytes]:
    return [
        bytes(RtpPacket(8, n & 0xFFFF, 160 * n & 0xFFFFFFFF, 0x1234, b"\xd5" * 160))
        for n in range(count)
    ]


def best_us(work: Callable[[], object], count: int) -> float:
    """The fastest of RUNS runs of `work`, in µs per packet of `count`."""
    best = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def per_packet(count: int) -> dict[str, float]:
    plain = packets(count)
    ours, theirs = new_key(), new_key()
    figures: dict[str, float] = {}

    # A fresh session per run: libsrtp refuses to protect an index twice.
    def protect() -> list[bytes]:
        streams = SrtpStreams(ours, theirs)
        return [streams.protect(p) for p in plain]

    figures["protect"] = best_us(protect, count)
    sealed = SrtpStreams(ours, theirs)
    protected = [sealed.protect(p) for p in plain]

    def unprotect() -> list[bytes | None]:
        streams = SrtpStreams(theirs, ours)
        return [streams.unprotect(p) for p in protected]

    figures["unprotect"] = best_us(unprotect, count)

    def keyed() -> CallCrypto:
        crypto = CallCrypto("required")
        crypto.answered("RTP/SAVP", (sdp_crypto.format_line(1, theirs),))
        return crypto

    def outgoing() -> list[bytes]:
        crypto = keyed()
        return [crypto.outgoing(p) for p in plain]

    figures["CallCrypto.outgoing"] = best_us(outgoing, count)
    return figures


def slot(streams: int) -> tuple[float, float]:
    """µs to build one packet for each of `streams` streams, plain and protected."""
    ticks = 250  # five seconds of audio
    audio = b"\xd5" * 160 * (ticks + 1)

    def build(protect: bool) -> float:
        best = float("inf")
        for _ in range(RUNS):
            cryptos = [CallCrypto("required") for _ in range(streams)]
            for crypto in cryptos:
                crypto.answered("RTP/SAVP", (sdp_crypto.format_line(1, new_key()),))
            rtp = [RtpStream(audio, 8, n, lambda _: None) for n in range(streams)]
            pairs = list(zip(rtp, cryptos, strict=True))
            start = time.perf_counter()
            for _ in range(ticks):
                if protect:
                    for stream, crypto in pairs:
                        packet = stream._advance()
                        if packet is not None:
                            crypto.outgoing(packet)
                else:
                    for stream in rtp:
                        stream._advance()
            best = min(best, (time.perf_counter() - start) / ticks)
        return best * 1e6

    return build(False), build(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--streams", type=int, default=500)
    args = parser.parse_args()
    import pylibsrtp

    print(f"pylibsrtp {pylibsrtp.__version__}, Python {sys.version.split()[0]}")
    print(
        f"{'per 172-byte packet':<28} {'µs':>8} {'core share, ' + str(args.streams) + ' calls':>24}"
    )
    for name, us in per_packet(args.packets).items():
        share = us * 50 * args.streams / 1e6
        print(f"{name:<28} {us:8.2f} {share:23.1%}")
    plain, protected = slot(args.streams)
    print(
        f"\npacer slot, {args.streams} streams: building {plain:.0f} µs plain, "
        f"{protected:.0f} µs with SRTP (+{protected - plain:.0f} µs per 20 ms)"
    )


if __name__ == "__main__":
    main()
