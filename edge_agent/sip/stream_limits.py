"""How many SIP stream connections (TCP, and TLS under it) the agent accepts, from whom,
and for how long; sized to the sockets the process may hold.

docs/decisions/sip-tcp-limits.md says why these values and why the newest connection
is refused rather than an older one closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from edge_agent import platforms
from edge_agent.sip.message import MAX_MESSAGE
from edge_agent.sip.peers import source_key

__all__ = ["StreamLimits", "descriptor_limit", "source_key"]

# Accepted connections from strangers (not a peer we connected to), all addresses.
MAX_INBOUND = 256
# From one stranger's address (an IPv6 /64: one host has all of it).
MAX_PER_SOURCE = 8
# From one peer we connected to (the PBX, the registrar): its own places, never a
# stranger's, so strangers filling theirs cannot keep out the PBX's BYE or INFO.
MAX_PER_PEER = 32
# A stranger's connection must deliver a complete message within this of opening or of
# its previous message; anyone's started message must be complete within it.
MESSAGE_S = 5.0
# A peer's connection without a message or keep-alive for this long is closed.
PEER_IDLE_S = 120.0
# Bytes of one unfinished message: strangers' requests are small (an INVITE with its
# SDP about 2 KiB); the PBX may send large NOTIFY bodies, up to a whole message.
MAX_PARTIAL = 16 * 1024
MAX_PARTIAL_PEER = MAX_MESSAGE
# Answers queued to a connection that does not read: past this it is closed.
MAX_UNREAD = 256 * 1024
# Accepted strangers take at most this share of the descriptor limit: the rest is for
# the calls' RTP sockets, the connections we open, files and the command channel.
DESCRIPTOR_SHARE = 4
MIN_INBOUND = 16
# CPython's FD_SETSIZE on Windows: what select() takes, the selector loop's wait there.
WINDOWS_SELECT_MAX = 512


@dataclass(frozen=True)
class StreamLimits:
    max_inbound: int = MAX_INBOUND
    max_per_source: int = MAX_PER_SOURCE
    max_per_peer: int = MAX_PER_PEER
    message_s: float = MESSAGE_S
    peer_idle_s: float = PEER_IDLE_S
    max_partial: int = MAX_PARTIAL
    max_partial_peer: int = MAX_PARTIAL_PEER
    max_unread: int = MAX_UNREAD

    def fitted(self, descriptors: int | None) -> StreamLimits:
        """These limits, lowered so accepted connections take at most a quarter of
        `descriptors` (None: no fixed limit, as on Windows' proactor loop)."""
        if descriptors is None:
            return self
        room = max(MIN_INBOUND, descriptors // DESCRIPTOR_SHARE)
        inbound = min(self.max_inbound, room)
        return replace(
            self,
            max_inbound=inbound,
            max_per_source=min(self.max_per_source, inbound),
            max_per_peer=min(self.max_per_peer, inbound),
        )


def descriptor_limit(loop: asyncio.AbstractEventLoop) -> int | None:
    """How many sockets this process may hold on `loop`.

    POSIX: RLIMIT_NOFILE's soft value (1,024 under most Linux services, 256 on macOS);
    None when unlimited. Windows: the proactor loop (the agent's) waits on completion
    ports and sockets are handles, with no table of 1,024 to run out of: None. A
    selector loop there waits in select(), which takes 512 sockets at most.
    """
    if platforms.on_windows():
        return WINDOWS_SELECT_MAX if platforms.loop_has_readers(loop) else None
    import resource  # POSIX only: after the Windows return above

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)
