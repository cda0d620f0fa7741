"""Closed things: freed by reference counting, and a full cyclic-GC pass for those that
escape it (sfu/rtc/reclaim.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sfu.rtc.reclaim import MINIMUM, RATIO, PeerReclaimer

GRACE = 0.01


class Cyclic:
    """A closed peer whose cycles were not all broken."""

    def __init__(self) -> None:
        self.me = self


class Plain:
    """A closed peer that reference counting frees."""


@pytest.fixture(autouse=True)
def no_automatic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def counted() -> tuple[PeerReclaimer, list[int]]:
    passes: list[int] = []

    def collect() -> int:
        passes.append(gc.collect())
        return passes[-1]

    return PeerReclaimer(collect, grace=GRACE), passes


async def close_all(reclaimer: PeerReclaimer, kind: type, count: int) -> None:
    for _ in range(count):
        reclaimer.opened()
    for _ in range(count):
        reclaimer.closed(kind())  # the caller holds nothing: only a cycle could keep it
    await asyncio.sleep(GRACE * 5)


async def test_peers_freed_by_reference_counting_never_cost_a_pass() -> None:
    reclaimer, passes = counted()
    await close_all(reclaimer, Plain, 10 * MINIMUM)
    assert passes == [] and reclaimer.escaped == 0 and reclaimer.live == 0


async def test_escaped_peers_are_collected_every_minimum_when_few_are_live() -> None:
    reclaimer, passes = counted()
    for _ in range(3):
        await close_all(reclaimer, Cyclic, MINIMUM)
    assert len(passes) == 3 and all(found > 0 for found in passes)
    assert reclaimer.escaped == 3 * MINIMUM and reclaimer.pending == 0


async def test_many_live_peers_collect_after_a_share_of_them_escaped() -> None:
    reclaimer, passes = counted()
    live = 400
    for _ in range(live):
        reclaimer.opened()
    closes = 0
    while not passes:
        reclaimer.closed(Cyclic())
        closes += 1
        await asyncio.sleep(GRACE * 2)
    # The first count that reaches a quarter of those still live: 80 >= (400 - 80) / 4.
    assert closes == 80 and closes >= RATIO * (live - closes) > MINIMUM


async def test_one_pass_frees_every_escaped_peer_of_a_burst() -> None:
    reclaimer, passes = counted()
    await close_all(reclaimer, Cyclic, 4 * MINIMUM)  # a room closing: all in one loop turn
    assert len(passes) == 1 and reclaimer.escaped == MINIMUM


async def test_watched_things_count_as_escaped_without_changing_the_live_peers() -> None:
    reclaimer, passes = counted()
    reclaimer.opened()
    for _ in range(MINIMUM):
        reclaimer.watch(Cyclic())
        reclaimer.watch(Plain())
    await asyncio.sleep(GRACE * 5)
    assert len(passes) == 1 and reclaimer.escaped == MINIMUM and reclaimer.live == 1
