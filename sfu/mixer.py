"""Mix mode, sans-I/O: who is mixed, which distinct mixes exist, what to encode every 20 ms.

Each mix is a *source* the router routes like a speaker: ``"mix"`` (everyone
mixed) goes to slot 0 of listeners and of speakers who are not mixed;
``"mix-minus:<id>"`` (everyone but that speaker) to slot 0 of each mixed
speaker, so nobody hears themself.  The other slots carry nothing.  The
mixed speakers are the head of the room's slot ranking (the loudest, the
dominant first), kept in place like a subscriber's slots so the mix does
not flap between sentences.

``Mixer`` lives on the event loop: it buffers packets per speaker
(``JitterBuffer``) and, every tick, says what each mixed speaker plays and
which mixes are wanted (``MixRound``).  ``Mixdown`` turns the decoded audio
into the int16 frames to encode.  A mix is encoded once per *distinct*
content: a mix-minus whose speaker is silent this tick equals the full mix,
so it reuses the full mix's packet instead of an encode of its own; a mix
nobody is heard in is not sent (after a short tail), unless it is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sfu.jitter import JitterBuffer, Unit
from sfu.levels import pcm_level
from sfu.mix import Limiter, Pcm, Pcm16, mix, mix_minus, to_int16
from sfu.rtp import FRAME_SAMPLES
from sfu.slots import Layout, Ranking, assign_slots

MIX = "mix"
"""The source id of the full mix (and what clients see in slot 0 in mix mode)."""
_MINUS_PREFIX = "mix-minus:"


def minus_source(participant_id: str) -> str:
    """The source id of the mix without ``participant_id``."""
    return _MINUS_PREFIX + participant_id


def is_mix(source: str | None) -> bool:
    return source is not None and (source == MIX or source.startswith(_MINUS_PREFIX))


class MediaMode(StrEnum):
    FORWARD = "forward"
    """Each listener gets up to K speakers' streams, forwarded untouched."""
    MIX = "mix"
    """Each listener gets one mixed stream in slot 0."""
    AUTO = "auto"
    """Forward, and mix while the audience or the stage is large."""


@dataclass(frozen=True, slots=True)
class AutoMix:
    """When ``auto`` mixes; it goes back to forwarding only well below (``hysteresis``)."""

    audience: int
    stage: int
    hysteresis: float = 0.8

    def wants_mix(self, mixing: bool, audience: int, stage: int) -> bool:
        scale = self.hysteresis if mixing else 1.0
        return audience >= self.audience * scale or stage >= self.stage * scale


@dataclass(frozen=True, slots=True)
class MediaModeState:
    """The mode a room is set to, and whether it mixes right now (``auto`` may or may not)."""

    mode: MediaMode
    mixing: bool


@dataclass(frozen=True, slots=True)
class MediaModeChanged:
    """The room's media mode or whether it currently mixes changed."""

    mode: MediaMode
    mixing: bool


@dataclass(frozen=True, slots=True)
class MixOutput:
    source: str
    exclude: str | None
    """The speaker this mix leaves out (mix-minus), or None for the full mix."""
    continuous: bool = False
    """Encoded every tick, silent or not (it is being recorded)."""


@dataclass(frozen=True, slots=True)
class MixRound:
    """One tick's work: decode ``inputs``, then render and encode ``outputs``."""

    tick: int
    inputs: tuple[tuple[str, tuple[Unit, ...]], ...]
    """Each mixed speaker with what its jitter buffer plays this tick."""
    outputs: tuple[MixOutput, ...]


class Mixer:
    def __init__(
        self,
        speakers: int = 3,
        delay: float = 0.02,
        max_delay: float = 0.2,
    ) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self.routed = False
        """Mix mode: the mixes go to subscribers (and mix-minus ones exist)."""
        self.recording = False
        """The full mix is recorded: it is wanted, and wanted continuous."""
        self.buffers: dict[str, JitterBuffer] = {}
        self._slots: Layout = (None,) * speakers
        self._mixed: frozenset[str] = frozenset()
        self._tick = 0
        self._mix_layouts: dict[int, Layout] = {}

    @property
    def mixed(self) -> tuple[str, ...]:
        """The speakers in the mix, in a stable order."""
        return tuple(pid for pid in self._slots if pid is not None)

    def select(self, ranking: Ranking) -> None:
        """Mix the head of ``ranking``; a mixed speaker keeps its place while ranked."""
        self._slots = assign_slots(self._slots, ranking, None)
        self._mixed = frozenset(self.mixed)

    def layout(self, participant_id: str, slots: int) -> Layout:
        """What ``participant_id``'s ``slots`` carry in mix mode."""
        if participant_id in self._mixed:
            return (minus_source(participant_id), *(None,) * (slots - 1))
        return self.audience_layout(slots)

    def audience_layout(self, slots: int) -> Layout:
        """What the audience's ``slots`` carry in mix mode: the full mix in slot 0."""
        layout = self._mix_layouts.get(slots)
        if layout is None:
            layout = self._mix_layouts[slots] = (MIX, *(None,) * (slots - 1))
        return layout

    # -- packets ---------------------------------------------------------
    def push(
        self, participant_id: str, sequence_number: int, timestamp: int, payload: bytes, now: float
    ) -> None:
        buffer = self.buffers.get(participant_id)
        if buffer is None:
            buffer = self.buffers[participant_id] = JitterBuffer(self.delay, self.max_delay)
        buffer.push(sequence_number, timestamp, payload, now)

    def remove(self, participant_id: str) -> None:
        self.buffers.pop(participant_id, None)

    def tick(self, now: float) -> MixRound:
        """Advance every speaker's playout by 20 ms; say what to decode and to render."""
        self._tick += 1
        inputs = []
        for pid, buffer in self.buffers.items():
            units = buffer.pop(now)  # unmixed speakers' audio is dropped, in time order
            if pid in self._mixed:
                inputs.append((pid, units))
        outputs: list[MixOutput] = []
        if self.routed or self.recording:
            outputs.append(MixOutput(MIX, None, continuous=self.recording))
        if self.routed:
            outputs.extend(MixOutput(minus_source(pid), pid) for pid in self.mixed)
        return MixRound(self._tick, tuple(inputs), tuple(outputs))


@dataclass(frozen=True, slots=True)
class MixFrame:
    pcm: Pcm16
    level: int
    """RFC 6464 level of the frame, for the packets' audio-level extension."""


@dataclass(frozen=True, slots=True)
class Rendered:
    frames: Mapping[str, MixFrame]
    """Source → the frame to encode for it."""
    aliases: Mapping[str, str]
    """Source → the source whose packet it sends too (same content this tick)."""


class Mixdown:
    """Mixes decoded audio into the frames to encode; runs wherever the codecs run."""

    def __init__(self, tail: int = 3) -> None:
        self.tail = tail
        """Ticks a mix is still sent after nobody is heard in it (the codec's last frames)."""
        self._limiters: dict[str, Limiter] = {}
        self._heard: dict[str, int] = {}

    def render(self, mix_round: MixRound, pcm: Mapping[str, Pcm | None]) -> Rendered:
        """``pcm``: each mixed speaker's decoded 20 ms, None for nothing to play."""
        tick = mix_round.tick
        audible = {pid: samples for pid, samples in pcm.items() if samples is not None}
        voices = frozenset(audible)
        total = mix(list(audible.values()), FRAME_SAMPLES)
        frames: dict[str, MixFrame] = {}
        aliases: dict[str, str] = {}
        by_content: dict[frozenset[str], str] = {}
        for output in mix_round.outputs:
            source = output.source
            content = voices - {output.exclude} if output.exclude is not None else voices
            if content:
                self._heard[source] = tick
            elif not output.continuous and tick > self._heard.get(source, -self.tail) + self.tail:
                continue  # nobody heard for a while: send nothing
            same = by_content.get(content)
            if same is not None:
                aliases[source] = same
                self._limiters.pop(source, None)  # it restarts fresh when it differs again
                continue
            by_content[content] = source
            limiter = self._limiters.get(source)
            if limiter is None:
                limiter = self._limiters[source] = Limiter()
            own = audible.get(output.exclude) if output.exclude is not None else None
            samples = to_int16(limiter.process(mix_minus(total, own)))
            frames[source] = MixFrame(samples, pcm_level(samples))
        wanted = {output.source for output in mix_round.outputs}
        for state in (self._limiters, self._heard):
            for source in [s for s in state if s not in wanted]:
                del state[source]
        return Rendered(frames, aliases)
