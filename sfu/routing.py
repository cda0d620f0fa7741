"""Producer → slot streams routing, rebuilt as an immutable snapshot on change.

The packet path does one dict lookup and iterates a tuple of streams: no copy,
no lock, and a rebuild in the middle of a fan-out cannot disturb it.  Listeners
joining or leaving a shared stream change only that stream's sink snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sfu.streams import SlotStream

_EMPTY: tuple[SlotStream, ...] = ()


class RoutingTable:
    def __init__(self) -> None:
        self._routes: Mapping[str, tuple[SlotStream, ...]] = MappingProxyType({})

    def rebuild(self, streams: Iterable[SlotStream]) -> None:
        routes: dict[str, list[SlotStream]] = {}
        for stream in streams:
            if stream.source is not None:
                routes.setdefault(stream.source, []).append(stream)
        self._routes = MappingProxyType({src: tuple(ss) for src, ss in routes.items()})

    def targets(self, producer_id: str) -> tuple[SlotStream, ...]:
        return self._routes.get(producer_id, _EMPTY)

    @property
    def entries(self) -> int:
        """Number of producer → subscriber-slot edges."""
        return sum(len(s.members) for ss in self._routes.values() for s in ss)

    @property
    def streams(self) -> int:
        """Number of routed slot streams (one header rewrite each per packet)."""
        return sum(len(ss) for ss in self._routes.values())

    def dump(self) -> dict[str, list[str]]:
        return {
            src: [f"{c.subscriber_id}#{c.slot}" for s in ss for c in s.members]
            for src, ss in self._routes.items()
        }
