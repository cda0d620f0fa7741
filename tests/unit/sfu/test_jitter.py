"""The mixer's per-speaker jitter buffer: reordering, loss, DTX, wrap-around, bounded latency."""

from __future__ import annotations

import pytest

from sfu.jitter import JitterBuffer, Lost, Packet, Silence, Unit, opus_samples
from sfu.rtp import FRAME_SAMPLES

TOC_20MS = 31 << 3  # CELT fullband, 20 ms, mono, one frame
TOC_10MS = 30 << 3  # CELT fullband, 10 ms
TOC_60MS = 3 << 3  # SILK narrowband, 60 ms
TICK = 0.02


def payload(n: int, toc: int = TOC_20MS) -> bytes:
    return bytes([toc]) + n.to_bytes(4, "big") + b"opus"


def number(unit: Unit) -> int:
    assert isinstance(unit, Packet)
    return int.from_bytes(unit.payload[1:5], "big")


def run(
    buffer: JitterBuffer, arrivals: list[tuple[float, int, int, bytes]], ticks: int
) -> list[tuple[Unit, ...]]:
    """Push (arrival, seq, ts, payload) as time passes; pop every 20 ms from t = 0.005."""
    pending = sorted(arrivals, key=lambda a: a[0])
    out = []
    for k in range(ticks):
        now = 0.005 + k * TICK
        while pending and pending[0][0] <= now:
            at, seq, ts, data = pending.pop(0)
            buffer.push(seq, ts, data, at)
        out.append(buffer.pop(now))
    return out


def stream(
    count: int, seq0: int = 0, ts0: int = 0, start: float = 0.0
) -> list[tuple[float, int, int, bytes]]:
    return [(start + i * TICK, seq0 + i, ts0 + i * FRAME_SAMPLES, payload(i)) for i in range(count)]


def played(rounds: list[tuple[Unit, ...]]) -> list[int]:
    """The numbers of the packets played, DTX packets left out."""
    return [number(u) for r in rounds for u in r if isinstance(u, Packet) and len(u.payload) > 1]


@pytest.mark.parametrize(
    ("data", "samples"),
    [
        (bytes([TOC_20MS]), 960),
        (bytes([TOC_10MS]), 480),
        (bytes([TOC_60MS]), 2880),
        (bytes([(16 << 3) | 1]), 240),  # CELT 2.5 ms, two frames
        (bytes([(1 << 3) | 3, 3]), 2880),  # SILK 20 ms, code 3 with three frames
        (bytes([(1 << 3) | 3]), 0),  # code 3 without its frame count
        (b"", 0),
    ],
)
def test_opus_packet_duration_from_the_toc(data: bytes, samples: int) -> None:
    assert opus_samples(data) == samples


def test_in_order_stream_plays_one_packet_per_tick_after_the_delay() -> None:
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, stream(50), 55)
    assert rounds[0] == ()  # the first packet is not yet 20 ms old
    assert all(len(r) == 1 and isinstance(r[0], Packet) for r in rounds[2:50])
    assert played(rounds) == list(range(50))
    assert buffer.stats["concealed"] == 3 and not buffer.playing  # the spurt's end
    assert buffer.stats["lost"] == 0


def test_packets_reordered_within_the_delay_play_in_order() -> None:
    arrivals = stream(40)
    for i in range(5, 35, 7):  # swap neighbours: i + 1 arrives 5 ms before i
        (_, *a), (t2, *b) = arrivals[i], arrivals[i + 1]
        arrivals[i], arrivals[i + 1] = (t2 + 0.005, *a), (t2, *b)  # type: ignore[assignment]
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, arrivals, 42)
    assert played(rounds) == list(range(40))
    assert buffer.stats["reordered"] == 5 and buffer.stats["lost"] == 0


def test_a_lost_packet_is_concealed_and_dropped_if_it_turns_up_late() -> None:
    arrivals = [a for a in stream(30) if a[1] != 10]
    late = stream(30)[10]
    arrivals.append((late[0] + 0.2, *late[1:]))  # 200 ms late: its turn has passed
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, arrivals, 30)
    flat = [u for r in rounds for u in r]
    assert played(rounds) == [i for i in range(29) if i != 10]
    lost_at = flat.index(Lost(FRAME_SAMPLES))
    assert number(flat[lost_at - 1]) == 9 and number(flat[lost_at + 1]) == 11
    assert buffer.stats["late"] == 1


def test_a_pause_ends_the_spurt_and_the_next_starts_after_the_delay() -> None:
    first = stream(10)
    second = [(0.4 + t, seq + 10, ts + 20 * FRAME_SAMPLES, data) for t, seq, ts, data in stream(10)]
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, first + second, 35)
    assert played(rounds) == list(range(10)) * 2
    assert buffer.stats["concealed"] == 6 and buffer.stats["lost"] == 0  # 3 after each


def test_dtx_gap_is_silence_and_the_next_talk_spurt_stays_on_time() -> None:
    # 10 packets, a DTX packet, then the next spurt: sequence numbers run on, 400 ms later.
    first = [*stream(10), (0.2, 10, 10 * FRAME_SAMPLES, bytes([TOC_20MS]))]
    second = [(0.4 + t, seq + 11, ts + 20 * FRAME_SAMPLES, data) for t, seq, ts, data in stream(10)]
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, first + second, 35)
    assert played(rounds) == list(range(10)) * 2
    assert sum(u.samples for r in rounds for u in r if isinstance(u, Silence)) == 9 * FRAME_SAMPLES
    assert buffer.stats["concealed"] == 3  # after the second spurt only
    # The second spurt plays exactly 400 ms after the first.
    starts = [k for k, r in enumerate(rounds) if r and isinstance(r[0], Packet)]
    assert starts[11] - starts[0] == 20


def test_dtx_packets_keep_the_stream_silent_without_concealment() -> None:
    dtx = [(i * 0.4, i, i * 20 * FRAME_SAMPLES, bytes([TOC_20MS])) for i in range(3)]
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, dtx, 45)
    assert buffer.stats["concealed"] == 0 and buffer.playing
    assert all(isinstance(u, Packet | Silence) for r in rounds for u in r)


def test_sequence_and_timestamp_wrap_around() -> None:
    arrivals = stream(40, seq0=65_520, ts0=2**32 - 5 * FRAME_SAMPLES)
    arrivals = [(t, seq & 0xFFFF, ts & 0xFFFFFFFF, data) for t, seq, ts, data in arrivals]
    buffer = JitterBuffer(delay=0.02)
    assert played(run(buffer, arrivals, 42)) == list(range(40))
    assert buffer.stats["lost"] == 0


def test_a_burst_after_a_stall_is_cut_back_to_the_delay() -> None:
    # 0.5 s of packets held up and delivered at once at 0.5 s, then real time again.
    arrivals = [(max(t, 0.5), seq, ts, data) for t, seq, ts, data in stream(60)]
    buffer = JitterBuffer(delay=0.02, max_delay=0.1)
    rounds = run(buffer, arrivals, 65)
    heard = played(rounds)
    assert heard == sorted(heard) and heard[-1] == 59
    assert buffer.stats["resyncs"] == 1 and buffer.stats["skipped"] > 15
    # Every packet that is played after the burst waited at most max_delay + a tick or two.
    for k, units in enumerate(rounds):
        for unit in units:
            if isinstance(unit, Packet) and k * TICK > 0.5:
                assert 0.005 + k * TICK - arrivals[number(unit)][0] <= 0.1 + 2 * TICK


def test_a_backlog_below_max_delay_is_drained_within_about_a_second() -> None:
    # The sender stalls 150 ms once; afterwards every packet arrives on time, but the
    # spurt restarted from the burst's oldest packet, 150 ms behind.
    arrivals = [
        (max(t, 0.65) if 0.5 <= t < 0.65 else t, seq, ts, data) for t, seq, ts, data in stream(150)
    ]
    buffer = JitterBuffer(delay=0.02, max_delay=0.2)
    rounds = run(buffer, arrivals, 152)

    def waited(k: int, unit: Unit) -> float:
        return 0.005 + k * TICK - arrivals[number(unit)][0]

    waits = [(k, waited(k, u)) for k, r in enumerate(rounds) for u in r if isinstance(u, Packet)]
    assert max(w for k, w in waits if 1.0 < k * TICK < 1.2) > 0.1  # behind after the stall
    assert max(w for k, w in waits if k * TICK > 2.2) <= 0.02 + TICK  # caught up
    assert buffer.stats["resyncs"] == 1 and 5 <= buffer.stats["skipped"] <= 8


def test_duplicates_are_ignored() -> None:
    arrivals = stream(20)
    arrivals += [(t + 0.001, seq, ts, data) for t, seq, ts, data in arrivals[::3]]
    buffer = JitterBuffer(delay=0.02)
    assert played(run(buffer, arrivals, 22)) == list(range(20))
    assert buffer.stats["duplicate"] + buffer.stats["late"] == 7


def test_short_and_long_packets_fill_20_ms_windows() -> None:
    short = [(i * 0.01, i, i * 480, payload(i, TOC_10MS)) for i in range(20)]
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, short, 12)
    assert [len(r) for r in rounds[2:10]] == [2] * 8
    long = [(i * 0.06, i, i * 2880, payload(i, TOC_60MS)) for i in range(5)]
    buffer = JitterBuffer(delay=0.02)
    rounds = run(buffer, long, 14)
    assert [len(r) for r in rounds[1:10]] == [1, 0, 0] * 3


def test_restarted_stream_is_taken_as_new() -> None:
    arrivals = stream(10) + stream(10, seq0=40_000, ts0=123_456, start=0.3)
    buffer = JitterBuffer(delay=0.02)
    assert played(run(buffer, arrivals, 30)) == list(range(10)) * 2
    assert buffer.stats["resets"] == 1
