"""The onset of a talk spurt, kept until the slot policy gives its speaker a slot.

A speaker enters listeners' slots when the slot policy next runs after its packets
showed it talking (``MediaConfig.tick_interval``); until then its packets have no
route.  Dropped, they were the first 20-40 ms of every talk spurt from a speaker not
already in a slot: a clipped first syllable (and, in the forwarding benchmark, one or
two packets missing at every listener).  Instead the last few such packets are held
here, and forwarded to the speaker's new slots just before its next packet, in order
and with sequence numbers continuous with it.

Only packets of a producer that may be heard (on stage, unmuted, forward mode) and is
merely not selected yet are held; they are released only while fresh (``max_age``)
and contiguous with the packet that found a route, so nothing from before a mute or a
gap is ever sent late.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(slots=True)
class _Held(Generic[P]):
    sequence: int
    arrived: float
    packet: P


@dataclass(slots=True, eq=False)
class Preroll(Generic[P]):
    max_age: float
    """Held packets older than this when their speaker gets a slot are not sent."""
    capacity: int
    """At most this many per producer (the newest)."""
    _held: dict[str, deque[_Held[P]]] = field(default_factory=dict)

    def hold(self, producer: str, sequence: int, packet: P, now: float) -> None:
        queue = self._held.get(producer)
        if queue is None:
            queue = self._held[producer] = deque(maxlen=self.capacity)
        queue.append(_Held(sequence, now, packet))

    def release(self, producer: str, sequence: int, now: float) -> list[P]:
        """What to send before packet ``sequence`` of ``producer``, the first one routed
        since packets were held: the fresh ones that run without a gap up to it."""
        queue = self._held.pop(producer, None)
        if not queue:
            return []
        released: list[P] = []
        expected = (sequence - 1) & 0xFFFF
        for held in reversed(queue):  # newest first: stop at the first gap or stale one
            if held.sequence != expected or now - held.arrived > self.max_age:
                break
            released.append(held.packet)
            expected = (expected - 1) & 0xFFFF
        released.reverse()
        return released

    def pending(self, producer: str) -> bool:
        return producer in self._held

    def forget(self, producer: str) -> None:
        self._held.pop(producer, None)
