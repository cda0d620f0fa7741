"""When closed peer connections trigger a full cyclic-GC pass (sfu/rtc/reclaim.py)."""

from __future__ import annotations

import asyncio

from sfu.rtc.reclaim import MINIMUM, RATIO, PeerReclaimer


def reclaimer_with_counter() -> tuple[PeerReclaimer, list[int]]:
    passes: list[int] = []

    def collect() -> int:
        passes.append(1)
        return 0

    return PeerReclaimer(collect), passes


async def test_few_live_peers_collect_every_minimum_closes() -> None:
    reclaimer, passes = reclaimer_with_counter()
    for _ in range(3 * MINIMUM):
        reclaimer.opened()
        reclaimer.closed()
        await asyncio.sleep(0)  # the pass runs soon after, not inside close
    assert len(passes) == 3
    assert reclaimer.live == 0 and reclaimer.pending == 0


async def test_many_live_peers_collect_after_a_share_of_them_closed() -> None:
    reclaimer, passes = reclaimer_with_counter()
    live = 400
    for _ in range(live):
        reclaimer.opened()
    closes = 0
    while not passes:
        reclaimer.closed()
        closes += 1
        await asyncio.sleep(0)
    # The first count that reaches a quarter of those still live: 80 >= (400 - 80) / 4.
    assert closes == 80 and closes >= RATIO * (live - closes) > MINIMUM


async def test_one_pass_for_a_burst_of_closes() -> None:
    reclaimer, passes = reclaimer_with_counter()
    for _ in range(4 * MINIMUM):
        reclaimer.opened()
    for _ in range(4 * MINIMUM):  # all within one loop turn: a room closing
        reclaimer.closed()
    await asyncio.sleep(0)
    assert len(passes) == 1 and reclaimer.pending == 0
