"""A subscriber's outbound slot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sfu.forwarder import Forwarder

Sink = Callable[[bytes], None]


@dataclass(slots=True, eq=False)
class Consumer:
    """Slot ``slot`` of ``subscriber_id``'s peer connection.

    ``source`` is the producer currently routed into the slot.  ``sink`` is
    attached by the I/O layer once the transport is up; the core never calls
    it — it only hands consumers to the layer that writes.
    """

    subscriber_id: str
    slot: int
    forwarder: Forwarder
    source: str | None = None
    sink: Sink | None = field(default=None, repr=False)
