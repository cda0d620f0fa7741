"""Media settings (frozen: one value per server process)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaConfig:
    slots: int = 3
    """Receive slots negotiated per participant: the most speakers one hears at once."""
    announce_addresses: tuple[str, ...] = ("auto",)
    """ICE host-candidate addresses; "auto" means the machine's interfaces."""
    udp_port: int | None = 0
    """The one UDP port every peer connection shares (0: the OS picks one at start);
    None: one OS-chosen port per peer connection, as aioice does by itself."""
    ice_consent_timeout: float = 30.0
    """Shared port: a peer connection whose client sent no ICE check for this long is closed."""
    slot_policy: str = "loudest"
    """"loudest": the loudest active speakers (dominant always); "arrival": stage order."""
    speaker_hold: float = 1.5
    """Seconds a speaker keeps its slot after it last talked (loudest policy)."""
    tick_interval: float = 0.05
    """How often level detection, dominant speaker and slot policy run."""
    speaking_interval: float = 0.3
    """How often speaking-indicator changes are reported."""
    fanout_chunk: int = 256
    """Yield to the event loop after this many sends of one packet (big rooms): a send
    batch's capacity, so that a chunk goes out in one ``sendmmsg``; ≈ 2.5 ms of work."""
    sender_report_interval: float = 5.0
    """How often each peer gets one RTCP sender report covering its active slots
    (libwebrtc's interval for audio; RTT estimates refresh at this pace)."""
    red: bool = True
    """Negotiate RED (RFC 2198, Opus inside) with peers that offer it: their uplink losses
    are repaired from its redundancy, and their slots get each frame with the previous
    ``red_distance`` ones (other peers get plain Opus)."""
    loss_feedback: bool = True
    """Receiver reports to a speaker carry its listeners' loss (``sfu.loss``), so that its
    Opus encoder adds in-band FEC for them."""
    red_distance: int = 1
    """Frames of redundancy the server adds for RED subscribers (RFC 2198 allows more;
    Chrome sends 1)."""
    mix_speakers: int = 3
    """Mix mode and recordings: the loudest speakers mixed together."""
    mix_jitter_delay: float = 0.02
    """How long a talk spurt is buffered before it is mixed (absorbs jitter, reordering)."""
    mix_bitrate: int = 32_000
    """Opus bitrate of each mix (mono)."""
    auto_mix_audience: int = 500
    """``auto`` media mode mixes once this many participants are off stage ..."""
    auto_mix_stage: int = 8
    """... or this many are on stage (and forwards again below 80 % of both)."""

    def __post_init__(self) -> None:
        if self.slot_policy not in ("loudest", "arrival"):
            raise ValueError(f"unknown slot policy {self.slot_policy!r}")
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
        if not 0 <= self.red_distance <= 3:
            raise ValueError("red_distance must be 0..3")
        if self.mix_speakers < 1:
            raise ValueError("mix_speakers must be at least 1")
