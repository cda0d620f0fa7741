"""A subscriber's outbound slot, bound to the slot stream it receives."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sfu.forwarder import Forwarder
from sfu.streams import Sink, SlotFormat, SlotStream

_SEQ_TS = struct.Struct("!HI")


@dataclass(slots=True, eq=False)
class Consumer:
    """Slot ``slot`` of ``subscriber_id``'s peer connection.

    It receives ``stream``'s packets as they are, unless it moved between
    streams: then ``seq_delta``/``ts_delta`` keep the numbering it saw running
    on, applied per packet (``patch``) to this subscriber only.  ``sink`` is
    attached by the I/O layer once the transport is up; the core never calls
    it, it only hands streams and their sinks to the layer that writes.
    """

    subscriber_id: str
    slot: int
    format: SlotFormat
    stream: SlotStream | None = None
    sink: Sink | None = field(default=None, repr=False)
    seq_delta: int = 0
    ts_delta: int = 0
    marker_pending: bool = False
    _carried_packets: int = 0
    _carried_octets: int = 0
    _base_packets: int = 0
    _base_octets: int = 0

    @property
    def source(self) -> str | None:
        """The producer currently routed into the slot."""
        return self.stream.source if self.stream is not None else None

    @property
    def forwarder(self) -> Forwarder | None:
        return self.stream.forwarder if self.stream is not None else None

    @property
    def offset(self) -> bool:
        """Whether this subscriber's packets differ from its stream's (after a move)."""
        return bool(self.seq_delta or self.ts_delta or self.marker_pending)

    def patch(self, data: bytes) -> bytes:
        """The stream's packet ``data`` as this subscriber's numbering has it."""
        out = bytearray(data)
        seq, ts = _SEQ_TS.unpack_from(out, 2)
        _SEQ_TS.pack_into(
            out, 2, (seq + self.seq_delta) & 0xFFFF, (ts + self.ts_delta) & 0xFFFFFFFF
        )
        if self.marker_pending:  # first packet after a move: a new talk spurt for the decoder
            out[1] |= 0x80
            self.marker_pending = False
        return bytes(out)

    # -- what this subscriber was sent (for truthful sender reports) ------
    @property
    def packets(self) -> int:
        fwd = self.forwarder
        return self._carried_packets + (fwd.packets - self._base_packets if fwd else 0)

    @property
    def octets(self) -> int:
        fwd = self.forwarder
        return self._carried_octets + (fwd.octets - self._base_octets if fwd else 0)

    def rtp_timestamp_at(self, now: float) -> int:
        fwd = self.forwarder
        if fwd is None:
            return 0
        return (fwd.rtp_timestamp_at(now) + self.ts_delta) & 0xFFFFFFFF

    def last_sequence(self) -> int:
        fwd = self.forwarder
        return (fwd.last_sequence + self.seq_delta) & 0xFFFF if fwd is not None else 0

    def rebase(self, stream: SlotStream | None, carry: bool) -> None:
        """Bind to ``stream``; ``carry`` keeps the counts sent so far (else they restart)."""
        packets, octets = (self.packets, self.octets) if carry else (0, 0)
        self.stream = stream
        self._carried_packets, self._carried_octets = packets, octets
        fwd = self.forwarder
        self._base_packets = fwd.packets if fwd is not None else 0
        self._base_octets = fwd.octets if fwd is not None else 0
