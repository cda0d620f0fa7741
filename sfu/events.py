"""Events the media core emits for the layer above (signaling, metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.activity import SpeakingChanged
from sfu.dominant_speaker import DominantSpeakerChanged
from sfu.mixer import MediaModeChanged
from sfu.slots import Layout


@dataclass(frozen=True, slots=True)
class SlotsChanged:
    """``subscriber_id``'s slot i now carries ``slots[i]`` (a participant id, or None)."""

    subscriber_id: str
    slots: Layout


RouterEvent = SlotsChanged | SpeakingChanged | DominantSpeakerChanged | MediaModeChanged
