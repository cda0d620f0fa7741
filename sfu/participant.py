"""A room member as the media core sees it: one producer, K consumer slots."""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.slots import Layout


@dataclass(slots=True, eq=False)
class Participant:
    id: str
    producer: Producer
    consumers: tuple[Consumer, ...] = field(default=())
    shared: bool = False
    """Its slots are bound to the audience's streams (not personal ones)."""

    @property
    def layout(self) -> Layout:
        return tuple(c.source for c in self.consumers)
