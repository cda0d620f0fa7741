"""Redundant audio (RED, RFC 2198) for Opus, sans-I/O.

A RED payload carries the primary Opus frame plus copies of the frames sent
just before it (Chrome sends one), so a receiver that lost a packet finds its
frame in the next one.  The server uses it both ways:

- ``RedReceiver`` turns a speaker's RED uplink back into Opus frames in
  order, recovering from the redundancy each frame whose own packet the server
  lost, so every subscriber gets every frame the server has;
- ``RedEncoder`` wraps each frame of a source (a speaker or a mix) with the
  frames before it for subscribers that negotiated RED, whatever the speaker
  sent, so their downlink losses are repaired by their own jitter buffer.

Header block (RFC 2198 section 3): F(1) PT(7) timestamp offset(14) length(10)
for each redundant block, then F=0 PT(7) for the primary; the blocks' data
follow in the same order, primary last.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

RED_MIME = "audio/red"
MAX_OFFSET = 0x3FFF  # 14 bits of timestamp offset: 341 ms at 48 kHz
MAX_BLOCK = 0x3FF  # 10 bits of block length
_RECENT = 64  # sequence numbers remembered to drop duplicates after a recovery


@dataclass(frozen=True, slots=True)
class RedBlock:
    payload_type: int
    timestamp_offset: int
    """How much older than the packet's timestamp this block's frame is (0: the primary)."""
    data: bytes


def parse_red(payload: bytes) -> tuple[RedBlock, ...]:
    """The blocks of a RED payload, oldest first, primary last; ValueError if malformed."""
    headers: list[tuple[int, int, int]] = []
    offset = 0
    while True:
        if offset >= len(payload):
            raise ValueError("RED header runs past the payload")
        first = payload[offset]
        if not first & 0x80:
            offset += 1
            break
        if offset + 4 > len(payload):
            raise ValueError("truncated RED block header")
        word = int.from_bytes(payload[offset + 1 : offset + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & MAX_BLOCK))
        offset += 4
    blocks: list[RedBlock] = []
    for payload_type, ts_offset, length in headers:
        if offset + length > len(payload):
            raise ValueError("RED block runs past the payload")
        blocks.append(RedBlock(payload_type, ts_offset, payload[offset : offset + length]))
        offset += length
    blocks.append(RedBlock(first & 0x7F, 0, payload[offset:]))
    return tuple(blocks)


def build_red(payload_type: int, primary: bytes, redundant: Sequence[tuple[int, bytes]]) -> bytes:
    """A RED payload: ``redundant`` as (timestamp offset, data), oldest first, then ``primary``.

    Blocks that RED cannot describe (offset over 14 bits, data over 1023
    bytes, or empty) are left out.
    """
    usable = [(o, d) for o, d in redundant if 0 < o <= MAX_OFFSET and 0 < len(d) <= MAX_BLOCK]
    header = b"".join(
        bytes([0x80 | payload_type]) + ((o << 10) | len(d)).to_bytes(3, "big") for o, d in usable
    )
    return header + bytes([payload_type]) + b"".join(d for _, d in usable) + primary


@dataclass(frozen=True, slots=True)
class Frame:
    """One Opus frame of a stream, as the packet that carried it as primary would have."""

    sequence_number: int
    timestamp: int
    payload: bytes
    recovered: bool = False
    """Taken from a later packet's redundancy: its own packet never reached us."""


def _newer(a: int, b: int, modulus: int) -> bool:
    """Whether ``a`` comes after ``b`` on a wrapping counter."""
    return 0 < (a - b) % modulus < modulus // 2


class RedReceiver:
    """One uplink's packets (RED or plain) → its Opus frames, lost ones recovered.

    Redundant block k (counting back from the primary) is the frame of the
    packet k sequence numbers earlier, as RFC 2198 senders (libwebrtc) put
    their previous packets' frames.  Blocks of another payload type than
    ``opus_payload_type`` (comfort noise, DTMF) are not audio to forward.
    """

    def __init__(self, red_payload_type: int, opus_payload_type: int) -> None:
        self.red_payload_type = red_payload_type
        self.opus_payload_type = opus_payload_type
        self.recovered = 0
        self._last: tuple[int, int] | None = None  # newest (sequence number, timestamp)
        self._recent: deque[int] = deque(maxlen=_RECENT)

    def push(
        self, sequence_number: int, timestamp: int, payload_type: int, payload: bytes
    ) -> list[Frame]:
        """The frames this packet brings, oldest first (raises ValueError on a bad RED payload)."""
        if payload_type != self.red_payload_type:
            return self._emit([Frame(sequence_number, timestamp, payload)])
        blocks = parse_red(payload)
        frames: list[Frame] = []
        if self._last is not None:
            last_seq, last_ts = self._last
            missing = (sequence_number - last_seq) % 0x10000 - 1
            redundant = blocks[:-1]
            for k in range(min(missing, len(redundant)), 0, -1):
                block = redundant[-k]
                ts = (timestamp - block.timestamp_offset) % 0x1_0000_0000
                usable = block.payload_type == self.opus_payload_type and block.data
                if usable and _newer(ts, last_ts, 0x1_0000_0000):
                    frames.append(Frame((sequence_number - k) % 0x10000, ts, block.data, True))
        primary = blocks[-1]
        if primary.payload_type == self.opus_payload_type:
            frames.append(Frame(sequence_number, timestamp, primary.data))
        return self._emit(frames, sequence_number, timestamp)

    def _emit(
        self, frames: list[Frame], sequence_number: int | None = None, timestamp: int = 0
    ) -> list[Frame]:
        """Advance to the packet's place in the stream; drop frames already given out."""
        if sequence_number is None:
            sequence_number, timestamp = frames[-1].sequence_number, frames[-1].timestamp
        if self._last is None or _newer(sequence_number, self._last[0], 0x10000):
            self._last = (sequence_number, timestamp)
        fresh = [f for f in frames if f.sequence_number not in self._recent]
        self._recent.extend(f.sequence_number for f in fresh)
        self.recovered += sum(f.recovered for f in fresh)
        return fresh


class RedEncoder:
    """One source's newest frames, to send each with the ``distance`` frames before it.

    Only frames of consecutive sequence numbers go together: after a gap
    (the source was not forwarded, or a frame is missing) the redundancy
    starts again from the next frame.  The RED payload of the newest frame is
    built once, on demand, whatever the number of subscribers wanting it.
    """

    def __init__(self, distance: int = 1) -> None:
        self._frames: deque[tuple[int, int, bytes]] = deque(maxlen=distance + 1)
        self._built: tuple[int, bytes] | None = None

    def push(self, sequence_number: int, timestamp: int, payload: bytes) -> None:
        frames = self._frames
        if frames and (sequence_number - frames[-1][0]) % 0x10000 != 1:
            frames.clear()
        frames.append((sequence_number, timestamp, payload))
        self._built = None

    def encode(self, payload_type: int) -> bytes:
        """The newest frame as RED, its blocks of Opus ``payload_type``."""
        built = self._built
        if built is not None and built[0] == payload_type:
            return built[1]
        *older, (_, timestamp, primary) = self._frames
        red = build_red(
            payload_type, primary, [((timestamp - ts) % 0x1_0000_0000, d) for _, ts, d in older]
        )
        self._built = (payload_type, red)
        return red
