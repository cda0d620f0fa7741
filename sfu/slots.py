"""Which speakers fill a subscriber's K slots.

A policy ranks the routable producers; ``assign_slots`` turns a ranking into a
stable layout for one subscriber: a speaker keeps its slot while selected, so
a change of speakers moves as few streams as possible and the client's
slot → participant map changes only where it must.  The subscriber's own
producer is never selected: nobody hears themself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sfu.producer import Producer

Layout = tuple[str | None, ...]


class SlotPolicy(Protocol):
    def rank(self, producers: Sequence[Producer], now: float) -> list[str]:
        """Routable producer ids, best first."""
        ...


class ArrivalOrderPolicy:
    """Speakers in the order they arrived on stage."""

    def rank(self, producers: Sequence[Producer], now: float) -> list[str]:
        live = [p for p in producers if p.routable]
        live.sort(key=lambda p: p.stage_since)
        return [p.participant_id for p in live]


def assign_slots(previous: Layout, ranked: Sequence[str], exclude: str | None) -> Layout:
    """Place the top ``len(previous)`` of ``ranked`` (minus ``exclude``), keeping incumbents."""
    k = len(previous)
    selected = [pid for pid in ranked if pid != exclude][:k]
    chosen = set(selected)
    layout: list[str | None] = [pid if pid in chosen else None for pid in previous]
    placed = {pid for pid in layout if pid is not None}
    newcomers = iter([pid for pid in selected if pid not in placed])
    for i, pid in enumerate(layout):
        if pid is None:
            layout[i] = next(newcomers, None)
    return tuple(layout)
