"""Media settings (frozen: one value per server process)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaConfig:
    slots: int = 3
    """Receive slots negotiated per participant: the most speakers one hears at once."""
    announce_addresses: tuple[str, ...] = ("auto",)
    """ICE host-candidate addresses; "auto" means the machine's interfaces."""
    fanout_chunk: int = 128
    """Yield to the event loop after this many sends of one packet (big rooms)."""
    sender_report_interval: float = 1.0
    """How often slot senders' RTCP SR counters are refreshed from the forwarders."""
