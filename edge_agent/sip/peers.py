"""Who a source is: a peer by its exact address, a stranger by what one host holds, and
the PBX's other addresses an installation names (RUNDRUF_AGENT_SIP_PBX_ADDRESSES).

A peer (the PBX, a registrar we connected to) is matched by its exact address: over
IPv6 every host of a LAN shares its /64, and a neighbour must not get the PBX's places
(issue 15, review). Strangers are grouped by what one host can hold (`source_key`: an
IPv6 /64) for their caps. A link-local address keeps its interface (fe80::/64 is on
every interface, and is not one network). docs/decisions/sip-tcp-limits.md says why.
"""

from __future__ import annotations

import ipaddress

__all__ = [
    "Networks",
    "address",
    "parse_networks",
    "peer_key",
    "source_key",
    "within",
]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Networks = tuple[Network, ...]

MAX_NETWORKS = 32  # entries of RUNDRUF_AGENT_SIP_PBX_ADDRESSES
# The widest network that may count as the PBX: a cluster's addresses, not a whole site.
WIDEST = {4: 16, 6: 48}


def address(host: str) -> IP | None:
    """`host` as an address (one mapped into IPv6 as IPv4; a link-local one with its
    scope); None when it is no address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def peer_key(host: str) -> str:
    """A peer's key: its exact address written one way, or the text if it is none."""
    ip = address(host)
    return host if ip is None else str(ip)


def source_key(host: str) -> str:
    """Whose connection it is, for a stranger's count: the IPv4 address (also when
    mapped into IPv6), an IPv6 address's /64 (one host may have all of it) with the
    interface of a link-local one, or the text itself if it is no address."""
    ip = address(host)
    if ip is None:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        network = str(ipaddress.IPv6Network((ip, 64), strict=False))
        return f"{network}%{ip.scope_id}" if ip.is_link_local and ip.scope_id else network
    return str(ip)


def within(host: str, networks: Networks) -> bool:
    """Whether `host` is an address in one of `networks` (any scope)."""
    ip = address(host)
    return ip is not None and any(ip in network for network in networks)


def parse_networks(text: str) -> Networks:
    """Comma-separated IP addresses or networks (CIDR); raises ValueError naming the
    entry that is none, or that is wider than a /16 (IPv4) or /48 (IPv6)."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if len(entries) > MAX_NETWORKS:
        raise ValueError(f"{len(entries)} entries; at most {MAX_NETWORKS}")
    networks: list[Network] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry[:60]!r} is no IP address or network (CIDR)") from None
        if isinstance(network, ipaddress.IPv6Network):
            mapped = network.network_address.ipv4_mapped
            if mapped is not None and network.prefixlen >= 96:  # compared as IPv4
                network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
        widest = WIDEST[network.version]
        if network.prefixlen < widest:
            raise ValueError(
                f"{entry[:60]!r} is wider than /{widest}: name the PBX's addresses, "
                "not a whole network"
            )
        networks.append(network)
    return tuple(networks)
