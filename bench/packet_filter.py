"""The kernel filter of the benchmarks' packet-socket observers (classic BPF).

`udp_ports(a, b)`: IPv4 UDP, not a later fragment, whose `a` port or `b` port (each
"source" or "destination" and a number) matches; what `tcpdump -dd` writes for
'ip and udp port P' on an Ethernet link, with either side's port chosen.
"""

from __future__ import annotations

import struct
from typing import Literal

Side = Literal["source", "destination"]
_OFFSET = {"source": 14, "destination": 16}  # from the IP header's end, Ethernet included


def udp_ports(a: tuple[Side, int], b: tuple[Side, int]) -> bytes:
    program = [
        (0x28, 0, 0, 12),  # ldh [12]: the ethertype
        (0x15, 0, 10, 0x0800),  # IPv4, else drop
        (0x30, 0, 0, 23),  # ldb [23]: the IP protocol
        (0x15, 0, 8, 17),  # UDP, else drop
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 6, 0, 0x1FFF),  # a later fragment: drop
        (0xB1, 0, 0, 14),  # x = IP header length
        (0x48, 0, 0, _OFFSET[a[0]]),  # ldh [x + 14 or 16]: a's port
        (0x15, 2, 0, a[1]),  # a match: accept
        (0x48, 0, 0, _OFFSET[b[0]]),  # b's port
        (0x15, 0, 1, b[1]),  # a match: accept, else drop
        (0x06, 0, 0, 0x40000),  # accept
        (0x06, 0, 0, 0),  # drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)
