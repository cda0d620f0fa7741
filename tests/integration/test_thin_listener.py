"""The benchmarks' thin listener counts real forwarded RTP and catches a broken stream."""

from __future__ import annotations

import itertools
import math
import os
import time

from pylibsrtp import Policy, Session

from benchmarks.thin_listener import ThinPacket, ThinReceiver
from tests.conftest import Connect, eventually
from tests.media import ToneTrack


def _ignore(_slot: int, _packet: object) -> None:
    pass


async def test_thin_listeners_count_verify_and_hand_on_stun(connect: Connect) -> None:
    receiver = ThinReceiver()
    receiver.window = (time.monotonic(), math.inf)
    await connect("speaker", "speaker", publish=ToneTrack(440))
    clients = [await connect(f"l{i}", on_packet=_ignore) for i in range(3)]
    seen: list[ThinPacket] = []
    listeners = [
        receiver.attach(c, seen.append if i == 0 else None, sample=10)
        for i, c in enumerate(clients)
    ]
    await eventually(lambda: all(x.packets >= 100 for x in listeners), timeout=15)
    for x in listeners:
        assert x.verified >= 9 and x.auth_failures == 0
        assert x.lost == 0 and x.late == 0
        assert x.in_window == x.per_slot[0] == x.packets  # one speaker, in slot 0
    assert {p.slot for p in seen} == {0} and any(p.payload for p in seen)
    seqs = [p.sequence_number for p in seen]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))

    # A stream the listener's keys do not authenticate is caught on the samples.
    wrong = Session(policy=Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_INBOUND))
    listeners[1].srtp = wrong
    failures = listeners[1].auth_failures
    await eventually(lambda: listeners[1].auth_failures >= failures + 2, timeout=10)
    # The ICE/DTLS side still runs through aioice: the peer connections stay up.
    assert all(c.pc is not None and c.pc.connectionState == "connected" for c in clients)
