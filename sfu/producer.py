"""A speaker's inbound audio, as the router sees it."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.rtp import SILENCE_LEVEL

VOICE_LEVEL = 40
"""RFC 6464 level at or below which (louder than -40 dBov) a packet counts as voice."""
DTX_MAX_BYTES = 2
"""An Opus payload this short is a DTX packet: a TOC byte (and at most one more), no
audio.  libwebrtc sends one when its encoder enters DTX; it is silence whatever
level its header claims."""
_VOICE_ALPHA = 0.1  # per 20 ms packet: ~7 voiced packets in a row lift the EMA past 0.5


@dataclass(slots=True, eq=False)
class Producer:
    """One participant's uplink audio.

    ``allowed`` follows the participant's role (on stage or not) and ``muted``
    a self or moderator mute: either one keeps its packets out of the routing
    table, so enforcement sits in the media path, not in the client.
    ``has_uplink`` says the peer connection negotiated a send track at all.
    """

    participant_id: str
    allowed: bool = False
    muted: bool = False
    has_uplink: bool = False
    stage_since: float = 0.0
    audio_level: int = SILENCE_LEVEL
    level_time: float | None = None
    voice_activity: float = 0.0
    """EMA over packets of "this packet is voice": reacts within ~150 ms, ignores a cough."""
    packets: int = 0
    octets: int = 0
    last_packet_time: float | None = None

    @property
    def routable(self) -> bool:
        return self.has_uplink and self.allowed and not self.muted

    def on_packet(self, level: int | None, size: int, now: float) -> None:
        self.packets += 1
        self.octets += size
        self.last_packet_time = now
        if level is not None:
            self.note_level(level, now)

    def note_level(self, level: int, now: float) -> None:
        self.audio_level = level
        self.level_time = now
        self.voice_activity += ((level <= VOICE_LEVEL) - self.voice_activity) * _VOICE_ALPHA
