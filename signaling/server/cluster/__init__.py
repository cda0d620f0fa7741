"""Cluster mode (``podium serve --redis``): one room served by several Podium processes.

Nodes find each other, claim rooms and carry signaling through Redis; media between
them goes over the SRTP relay (``sfu.rtc.relay``).  docs/cluster.md has the picture,
every Redis key and channel, and what is built so far.
"""
