"""Which speakers fill a subscriber's K slots.

A policy ranks the routable producers; ``assign_slots`` turns a ranking into a
stable layout for one subscriber: a speaker keeps its slot while selected, so
a change of speakers moves as few streams as possible and the client's
slot → participant map changes only where it must.  The subscriber's own
producer is never selected: nobody hears themself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sfu.activity import Activity
from sfu.producer import VOICE_LEVEL, Producer

Layout = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Ranking:
    order: tuple[str, ...] = ()
    """Producers that deserve a slot, best first (routable ones only)."""
    keep_only: frozenset[str] = frozenset()
    """Of those, the ones that may keep a slot they hold but not take another."""


class SlotPolicy(Protocol):
    def rank(self, producers: Sequence[Producer], activity: Activity, now: float) -> Ranking: ...


class ArrivalOrderPolicy:
    """Speakers in the order they arrived on stage, talking or not."""

    def rank(self, producers: Sequence[Producer], activity: Activity, now: float) -> Ranking:
        live = [p for p in producers if p.routable]
        live.sort(key=lambda p: p.stage_since)
        return Ranking(tuple(p.participant_id for p in live))


class LoudestPolicy:
    """The loudest talking producers, the dominant one always first.

    Talking — speaking per the windowed level detector, or sustained voice
    per the producer's packet-level EMA (~150 ms) — ranks by loudness and wins
    a slot from an incumbent.  A producer that talked within ``hold`` seconds,
    or whose newest packet carries voice, stays eligible behind them, ordered
    by when its activity began: it keeps a slot it holds and fills a slot
    nobody talking needs (a silent held one only keeps).  So a talk spurt is
    heard from its first packets and takes over a slot within a few hundred
    ms, yet a cough displaces nobody and slots do not flap between sentences.
    """

    def __init__(self, hold: float = 1.5, recent: float = 0.1, sustained: float = 0.5) -> None:
        self.hold = hold
        self.recent = recent
        self.sustained = sustained
        self._last_active: dict[str, float] = {}
        self._since: dict[str, float] = {}

    def rank(self, producers: Sequence[Producer], activity: Activity, now: float) -> Ranking:
        levels = activity.levels.producers
        keyed: list[tuple[int, float, str]] = []
        silent: set[str] = set()
        for p in producers:
            pid = p.participant_id
            state = levels.get(pid)
            fresh = p.level_time is not None and now - p.level_time <= self.recent
            talking = (state is not None and state.speaking) or (
                fresh and p.voice_activity >= self.sustained
            )
            voice = fresh and p.audio_level <= VOICE_LEVEL
            if p.routable and (talking or voice or pid == activity.dominant):
                self._last_active[pid] = now
                self._since.setdefault(pid, now)
            elif not p.routable or now - self._last_active.get(pid, -self.hold - 1) > self.hold:
                self._last_active.pop(pid, None)
                self._since.pop(pid, None)
                continue
            if pid == activity.dominant:
                keyed.append((0, 0.0, pid))
            elif talking:
                loudness = state.dbov if state is not None and state.speaking else -p.audio_level
                keyed.append((1, -loudness, pid))
            else:
                keyed.append((2, self._since[pid], pid))
                if not voice:
                    silent.add(pid)
        known = {p.participant_id for p in producers}
        for pid in [pid for pid in self._last_active if pid not in known]:
            del self._last_active[pid], self._since[pid]
        keyed.sort()
        return Ranking(tuple(pid for _, _, pid in keyed), frozenset(silent))


def assign_slots(previous: Layout, ranking: Ranking, exclude: str | None) -> Layout:
    """Place the top ``len(previous)`` of the ranking (minus ``exclude``), keeping incumbents."""
    k = len(previous)
    held = set(previous)
    selected = [
        pid
        for pid in ranking.order
        if pid != exclude and (pid in held or pid not in ranking.keep_only)
    ][:k]
    chosen = set(selected)
    layout: list[str | None] = [pid if pid in chosen else None for pid in previous]
    placed = {pid for pid in layout if pid is not None}
    newcomers = iter([pid for pid in selected if pid not in placed])
    for i, pid in enumerate(layout):
        if pid is None:
            layout[i] = next(newcomers, None)
    return tuple(layout)
