"""Loss repair and onsets through an impaired downlink.

``python -m benchmarks.impairment --loss PCT --burst N --delay MS --jitter MS --seconds S
--json PATH``

One speaker (an aiortc peer sending plain Opus, as the Python SDK does) and
listeners with and without RED (``--listeners`` of each), every listener's
downlink through its own ``ImpairmentRelay`` (random or bursty loss, delay,
jitter).  The server runs in its own process (``python -m signaling.server.cli serve
--dev``); listeners take packets undecoded.  The speaker's script repeats
every 6 s: a 1.5 s talk spurt, silence, one 10 ms tone burst 2 s later, then
2.5 s of silence (the slot hold expires before each sound).

Figures:
- ``loss_ratio``: RTP packets the relays dropped / sent towards listeners;
- ``unrecovered_ratio_red`` / ``_plain``: frames a listener never got (nor,
  with RED, found in a later packet's redundancy) / frames sent to it;
- ``onset_delay_ms_p50`` / ``_p95``: a spurt's first voiced packet's arrival
  after the speaker's first voiced frame, less that spurt's steady-state
  one-way delay (median over its voiced packets, matched to sent frames by
  sequence number): the part of the first-audio delay that onsets add,
  including a lost first frame (+20 ms each);
- ``short_sound_delivery``: share of (burst, listener) pairs where the burst
  arrived (a voiced packet, or for RED listeners a lost one repaired from
  redundancy within the burst's 300 ms);
- ``server_cpu_us_per_packet``: the server process's CPU time over the run /
  RTP packets it sent to listeners (includes RTCP, ICE and timers: with few
  listeners this is mostly fixed cost, see ``benchmarks.forwarding``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc.rtp import RtpPacket

from benchmarks.common import (
    HOST,
    cpu_seconds,
    free_port,
    percentile,
    server_command,
    start_server,
    wait_healthy,
)
from benchmarks.impairment_relay import Impairment, ImpairmentRelay, connect_through
from sfu.levels import pcm_level
from sfu.producer import VOICE_LEVEL
from sfu.red import parse_red
from signaling.client.client import PodiumClient
from signaling.client.tracks import ToneTrack
from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
from signaling.wire.tokens import mint_token

CYCLE, SPURT, BURST_AT, BURST = 6.0, 1.5, 3.5, 0.010
WINDOW = 0.3  # a burst counts as delivered if it arrives within this


class LoggedTone(ToneTrack):
    """Notes when each frame left for the encoder and whether it is voiced."""

    def __init__(self, talk: tuple[tuple[float, float], ...]) -> None:
        super().__init__(700.0, amplitude=0.3, talk=talk)
        self.sent: list[tuple[float, bool]] = []

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self.sent.append((time.monotonic(), pcm_level(frame.to_ndarray()) <= VOICE_LEVEL))
        return frame


@dataclass
class Listener:
    red: bool
    relay: ImpairmentRelay
    got: dict[int, tuple[float, int | None, bytes]] = field(default_factory=dict)
    """Slot 0's packets by (unwrapped) sequence number: arrival, level, payload."""
    _cycles: int = 0
    _last: int | None = None

    def on_packet(self, slot: int, packet: RtpPacket) -> None:
        if slot != 0:
            return
        seq = packet.sequence_number
        if self._last is not None and seq < 0x4000 and self._last > 0xC000:
            self._cycles += 1
        self._last = seq
        ext = packet.extensions.audio_level
        self.got[seq + (self._cycles << 16)] = (
            time.monotonic(),
            ext[1] if ext else None,
            packet.payload,
        )

    def missing(self) -> list[int]:
        seqs = sorted(self.got)
        return [s for s in range(seqs[0], seqs[-1]) if s not in self.got] if seqs else []

    def recovered(self, lost: int) -> bool:
        """A later packet within its redundancy distance carried frame ``lost``."""
        for seq in range(lost + 1, lost + 4):
            packet = self.got.get(seq)
            if packet is not None:
                blocks = parse_red(packet[2])
                return len(blocks) - 1 >= seq - lost and bool(blocks[-1 - (seq - lost)].data)
        return False

    def voiced(self, start: float, end: float) -> list[tuple[int, float]]:
        """(sequence number, arrival) of the voiced packets that arrived in the window."""
        return sorted(
            (seq, at)
            for seq, (at, level, _) in self.got.items()
            if start <= at < end and level is not None and level <= VOICE_LEVEL
        )

    def onset_ms(self, sent: list[float], start: float) -> float | None:
        """First voiced arrival after ``sent[0]`` less the spurt's steady one-way delay.

        Packets are matched to sent frames by sequence number from the first voiced
        arrival, which is sent frame ``j``: ``j`` counts the packets lost just before it
        (taken as voiced: a lost onset delays the first audio by a frame each).
        """
        got = self.voiced(start - 0.1, start + SPURT + 0.5)
        if not sent or len(got) < 20:
            return None
        first_seq, first_at = got[0]
        j, lowest = 0, min(self.got)
        while j < 3 and lowest < first_seq - j - 1 and first_seq - j - 1 not in self.got:
            j += 1
        delays = sorted(
            at - sent[seq - first_seq + j]
            for seq, at in got
            if 0 <= seq - first_seq + j < len(sent)
        )
        return (first_at - sent[0] - delays[len(delays) // 2]) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the server, below)
    server = start_server(server_command("signaling.server.cli", port, 3), log)
    clients: list[PodiumClient] = []
    relays: list[ImpairmentRelay] = []
    try:
        wait_healthy(port, server, 20.0)
        url = f"ws://{HOST}:{port}/rtc"

        def token(identity: str, role: str = "listener") -> str:
            return mint_token(
                DEV_API_KEY, DEV_API_SECRET, identity=identity, room="bench", role=role
            )

        impairment = Impairment(
            loss=args.loss / 100,
            burst=args.burst,
            delay=args.delay / 1000,
            jitter=args.jitter / 1000,
        )
        listeners: list[Listener] = []
        for i in range(2 * args.listeners):
            relay = ImpairmentRelay(down=impairment, seed=args.seed + i)
            await relay.start()
            relays.append(relay)
            listener = Listener(red=i % 2 == 0, relay=relay)
            clients.append(
                await connect_through(
                    relay,
                    url,
                    token(f"{'red' if listener.red else 'plain'}-{i}"),
                    host_addresses=[HOST],
                    on_packet=listener.on_packet,
                    red=listener.red,
                )
            )
            listeners.append(listener)
        cycles = max(1, int(args.seconds / CYCLE))
        talk = tuple(
            span
            for c in range(cycles)
            for span in (
                (c * CYCLE, c * CYCLE + SPURT),
                (c * CYCLE + BURST_AT, c * CYCLE + BURST_AT + BURST),
            )
        )
        track = LoggedTone(talk)
        clients.append(
            await PodiumClient.connect(
                url, token("speaker", "speaker"), host_addresses=[HOST], publish=track
            )
        )
        while track.started is None:
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # everyone connected and settled
        cpu0 = cpu_seconds(server.pid)
        epoch = track.epoch = time.monotonic() + 0.5
        await asyncio.sleep(0.5 + cycles * CYCLE + 0.5)
        cpu = cpu_seconds(server.pid) - cpu0
    finally:
        for client in clients:
            await client.close()
        for relay in relays:
            relay.close()
        server.terminate()
        server.wait(10)
        log.close()

    dropped = sum(len(r.down.dropped_rtp) for r in relays)
    sent_rtp = sum(len(listener.got) for listener in listeners) + dropped

    def unrecovered(red: bool) -> float:
        lost = frames = 0
        for listener in listeners:
            if listener.red == red and listener.got:
                missing = listener.missing()
                lost += sum(1 for s in missing if not (red and listener.recovered(s)))
                frames += len(listener.got) + len(missing)
        return lost / frames if frames else float("nan")

    onsets: list[float] = []
    onsets_by_kind: dict[bool, list[float]] = {True: [], False: []}
    deliveries = {True: [0, 0], False: [0, 0]}
    for c in range(cycles):
        start = epoch + c * CYCLE
        sent = [at for at, v in track.sent if v and start - 0.1 <= at < start + SPURT + 0.1]
        burst = epoch + c * CYCLE + BURST_AT - 0.05  # its frame leaves when the frame starts
        for listener in listeners:
            onset = listener.onset_ms(sent, start)
            if onset is not None:
                onsets.append(onset)
                onsets_by_kind[listener.red].append(onset)
            arrived = bool(listener.voiced(burst, burst + WINDOW))
            if not arrived and listener.red:
                window = [
                    s for s, (at, _, _) in listener.got.items() if burst <= at < burst + WINDOW
                ]
                arrived = any(
                    listener.recovered(s)
                    for s in listener.missing()
                    if window and min(window) - 3 <= s <= max(window)
                )
            deliveries[listener.red][0] += arrived
            deliveries[listener.red][1] += 1
    delivered = deliveries[True][0] + deliveries[False][0]
    bursts = deliveries[True][1] + deliveries[False][1]
    return {
        "loss_ratio": round(dropped / sent_rtp, 4) if sent_rtp else None,
        "unrecovered_ratio_red": round(unrecovered(True), 4),
        "unrecovered_ratio_plain": round(unrecovered(False), 4),
        "onset_delay_ms_p50": round(percentile(onsets, 50), 1),
        "onset_delay_ms_p95": round(percentile(onsets, 95), 1),
        "onset_delay_ms_p95_red": round(percentile(onsets_by_kind[True], 95), 1),
        "onset_delay_ms_p95_plain": round(percentile(onsets_by_kind[False], 95), 1),
        "onsets_measured": len(onsets),
        "short_sound_delivery": round(delivered / bursts, 4) if bursts else None,
        "short_sound_delivery_red": round(deliveries[True][0] / max(1, deliveries[True][1]), 4),
        "short_sound_delivery_plain": round(deliveries[False][0] / max(1, deliveries[False][1]), 4),
        "server_cpu_us_per_packet": round(cpu * 1e6 / sent_rtp, 1) if sent_rtp else None,
        "rtp_packets_to_listeners": sent_rtp,
        "rtp_packets_dropped": dropped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.impairment", description=__doc__)
    parser.add_argument("--loss", type=float, default=5.0, help="percent of packets dropped")
    parser.add_argument("--burst", type=float, default=1.0, help="mean loss run length")
    parser.add_argument("--delay", type=float, default=0.0, help="ms added each way")
    parser.add_argument("--jitter", type=float, default=0.0, help="up to this many ms more")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--listeners", type=int, default=2, help="of each kind (RED, plain)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    report = {
        "command": shlex.join(
            ["python", "-m", "benchmarks.impairment", *(sys.argv[1:] if argv is None else argv)]
        ),
        "parameters": vars(args),
        **results,
    }
    with open(args.json, "w") as out:
        json.dump(report, out, indent=2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
