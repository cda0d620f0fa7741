"""Slot streams: one rewritten RTP stream per slot, shared by every listener of that slot.

Listeners who receive the same slot receive the same RTP stream: the header
rewrite (SSRC, sequence, timestamp, marker, audio level) is done once per packet
per stream, and only SRTP protection and queueing the datagram stay per listener
(their keys differ).  The audience shares one stream per slot and format; a
participant who must not hear itself (a ranked speaker), or whose slots do not
match the audience's, gets personal streams, forked from the ones it had so its
numbering runs on.

A stream is named by its ``StreamKey`` alone, so a cluster relay can carry
``(key, rewritten packet)`` and the far side deliver it to the subscribers it
binds to the stream of the same key: the rewrite is done once in the cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sfu.forwarder import Forwarder

Sink = Callable[[bytes], None]


class Subscriber(Protocol):
    """What a stream needs of a subscriber slot bound to it (``sfu.consumer.Consumer``)."""

    @property
    def subscriber_id(self) -> str: ...

    @property
    def slot(self) -> int: ...

    @property
    def sink(self) -> Sink | None: ...

    @property
    def offset(self) -> bool: ...

    def patch(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SlotFormat:
    """What a subscriber negotiated for a slot: the bytes of its stream depend on nothing else.

    Subscribers who negotiated RFC 2198 redundancy (``red_payload_type``) share one
    stream carrying RED, the others one carrying plain Opus, with no per-listener
    work: the I/O layer builds each payload once per stream.
    """

    payload_type: int
    """Opus's payload type (inside RED too)."""
    level_ext_id: int | None = None
    red_payload_type: int | None = None
    """RED's payload type where the subscriber negotiated RED, else None: plain Opus."""


@dataclass(frozen=True, slots=True)
class StreamKey:
    slot: int
    format: SlotFormat
    owner: str | None = None
    """None for the audience's shared stream, else the participant whose personal stream it is."""


@dataclass(slots=True, eq=False)
class SlotStream:
    """One outbound RTP stream and the subscriber slots bound to it.

    ``sinks`` (subscribers whose numbering is the stream's) and ``patched``
    (those offset after a move between streams) are immutable snapshots,
    swapped on change, so a fan-out in progress is never disturbed.
    """

    key: StreamKey
    forwarder: Forwarder
    source: str | None = None
    """The producer the slot policy routes into this stream."""
    members: dict[Subscriber, None] = field(default_factory=dict)
    sinks: tuple[Sink, ...] = ()
    patched: tuple[Subscriber, ...] = ()

    def assign(self, source: str | None) -> None:
        if source != self.source:
            self.source = source
            self.forwarder.detach()

    def fork(self, key: StreamKey) -> SlotStream:
        """A new stream that continues this one's numbering (and source) exactly."""
        return SlotStream(key, copy.copy(self.forwarder), self.source)

    def add(self, consumer: Subscriber) -> None:
        self.members[consumer] = None
        if consumer.sink is None:
            return
        if consumer.offset:
            self.patched = (*self.patched, consumer)
        else:
            self.sinks = (*self.sinks, consumer.sink)

    def remove(self, consumer: Subscriber) -> None:
        if consumer not in self.members:
            return
        del self.members[consumer]
        if consumer in self.patched:  # (its offset may have gone to zero since it was added)
            self.patched = tuple(c for c in self.patched if c is not consumer)
        elif consumer.sink is not None:
            sink = consumer.sink
            self.sinks = tuple(s for s in self.sinks if s is not sink)

    @property
    def receivers(self) -> int:
        """Subscribers this stream's packets are written to now."""
        return len(self.sinks) + len(self.patched)
