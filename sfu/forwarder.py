"""Per-subscriber-slot RTP rewriting: one outbound stream, many successive sources.

A slot's subscriber sees a single SSRC whose sequence numbers and timestamps run
on without gaps or jumps backwards when the speaker in the slot changes, so its
jitter buffer and decoder never reset.  The marker bit flags each switch as the
start of a talkspurt.  The forwarder only decides and rewrites; the I/O layer
writes the bytes it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.rtp import FRAME_SAMPLES, OPUS_CLOCK_RATE, build_header


@dataclass(slots=True, eq=False)
class Forwarder:
    ssrc: int
    payload_type: int
    """The subscriber's Opus payload type."""
    level_ext_id: int | None = None
    red_payload_type: int | None = None
    """Set when the subscriber negotiated RED (RFC 2198): it gets RED payloads."""
    initial_sequence: int = 0
    initial_timestamp: int = 0
    clock_rate: int = OPUS_CLOCK_RATE
    packets: int = 0
    octets: int = 0
    switches: int = 0
    last_sequence: int = field(init=False)
    last_timestamp: int = field(init=False)
    last_time: float | None = field(default=None, init=False)
    source: str | None = field(default=None, init=False)
    _seq_offset: int = field(default=0, init=False)
    _ts_offset: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.last_sequence = (self.initial_sequence - 1) & 0xFFFF
        self.last_timestamp = (self.initial_timestamp - FRAME_SAMPLES) & 0xFFFFFFFF

    def rewrite(
        self,
        source: str,
        sequence_number: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        level: int | None,
        now: float,
        payload_type: int | None = None,
    ) -> bytes:
        """Return the packet to send to this slot's subscriber (``payload_type``: the
        payload's, when not plain Opus)."""
        if source != self.source:
            self._resync(source, sequence_number, timestamp, now)
            marker = True
        seq = (sequence_number + self._seq_offset) & 0xFFFF
        ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        if (seq - self.last_sequence) & 0xFFFF < 0x8000:  # newer: advance the continuity point
            self.last_sequence = seq
            self.last_timestamp = ts
            self.last_time = now
        self.packets += 1
        self.octets += len(payload)
        return (
            build_header(
                self.payload_type if payload_type is None else payload_type,
                marker,
                seq,
                ts,
                self.ssrc,
                self.level_ext_id,
                level,
            )
            + payload
        )

    def detach(self) -> None:
        """The slot's source changed: whoever comes next (even the same speaker back
        after a gap) continues the stream from here instead of jumping by the packets
        dropped meanwhile."""
        if self.source is not None:
            self.switches += 1
            self.source = None

    def _resync(self, source: str, sequence_number: int, timestamp: int, now: float) -> None:
        if self.last_time is None:
            step = FRAME_SAMPLES
        else:
            step = max(FRAME_SAMPLES, round((now - self.last_time) * self.clock_rate))
        next_seq = (self.last_sequence + 1) & 0xFFFF
        next_ts = (self.last_timestamp + step) & 0xFFFFFFFF
        self._seq_offset = (next_seq - sequence_number) & 0xFFFF
        self._ts_offset = (next_ts - timestamp) & 0xFFFFFFFF
        if self.source is not None:
            self.switches += 1
        self.source = source

    def rtp_timestamp_at(self, now: float) -> int:
        """The stream's RTP timestamp extrapolated to ``now`` (for truthful sender reports)."""
        if self.last_time is None:
            return self.last_timestamp
        elapsed = max(0.0, now - self.last_time)
        return (self.last_timestamp + round(elapsed * self.clock_rate)) & 0xFFFFFFFF
