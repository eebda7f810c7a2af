"""A focused asyncio SIP user agent: pure protocol modules, sockets handed in.

`message` (SIP messages), `sdp`, `digest`, `rtp` (RTP, RFC 4733 events,
G.711) are pure; `pacer` sends every call's RTP from one scheduler; `ua`
holds transactions, registration and calls over a transport from `transport`.
"""
