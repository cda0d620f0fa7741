"""Producer → consumers routing, rebuilt as an immutable snapshot on change.

The packet path does one dict lookup and iterates a tuple: no copy, no lock,
and a rebuild in the middle of a fan-out cannot disturb it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sfu.consumer import Consumer

_EMPTY: tuple[Consumer, ...] = ()


class RoutingTable:
    def __init__(self) -> None:
        self._routes: Mapping[str, tuple[Consumer, ...]] = MappingProxyType({})

    def rebuild(self, consumers: Iterable[Consumer]) -> None:
        routes: dict[str, list[Consumer]] = {}
        for consumer in consumers:
            if consumer.source is not None:
                routes.setdefault(consumer.source, []).append(consumer)
        self._routes = MappingProxyType({src: tuple(cs) for src, cs in routes.items()})

    def targets(self, producer_id: str) -> tuple[Consumer, ...]:
        return self._routes.get(producer_id, _EMPTY)

    @property
    def entries(self) -> int:
        """Number of producer → consumer edges."""
        return sum(len(cs) for cs in self._routes.values())

    def dump(self) -> dict[str, list[str]]:
        return {
            src: [f"{c.subscriber_id}#{c.slot}" for c in cs] for src, cs in self._routes.items()
        }
