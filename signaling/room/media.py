"""What a room needs of its media, as a protocol: the one door between signaling and media.

``sfu.rtc.media_room.MediaRoom`` is the real implementation; unit tests use a fake.
Signaling code never reaches past this interface (no peers, no aiortc objects), and
media refusals arrive as ``sfu.errors.MediaError``, mapped here to wire codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sfu.errors import MediaError, MediaErrorKind
from sfu.events import RouterEvent
from sfu.mixer import MediaMode, MediaModeState
from sfu.slots import Layout
from sfu.stats import MediaStats
from signaling.wire.errors import ErrorCode, PodiumError

MediaEventHandler = Callable[[RouterEvent], None]
PeerLostHandler = Callable[[str, str], Awaitable[None]]


class MediaFacade(Protocol):
    def join(self, participant_id: str, may_publish: bool) -> None: ...

    async def connect(self, participant_id: str, offer_sdp: str, ice_restart: bool = False) -> str:
        """Answer the participant's SDP offer (``ice_restart``: on its current peer
        connection, whose ICE credentials alone change); raises MediaError."""
        ...

    async def leave(self, participant_id: str) -> None: ...

    def reattach(self, participant_id: str) -> bool:
        """The participant's signaling resumed on a new connection; True when its media
        must be negotiated afresh because of it (in a cluster: it came back through
        another node, where its peer connection will now live)."""
        ...

    def set_publish_allowed(self, participant_id: str, allowed: bool) -> None: ...

    def set_muted(self, participant_id: str, muted: bool) -> None: ...

    def set_media_mode(self, mode: MediaMode) -> None: ...

    def layout(self, participant_id: str) -> Layout:
        """Who is in each of the participant's slots now (empty before it negotiated)."""
        ...

    @property
    def media_mode(self) -> MediaModeState: ...

    @property
    def recording(self) -> Path | None: ...

    def start_recording(self, path: Path) -> float:
        """Returns the wall-clock start; raises MediaError or OSError."""
        ...

    def stop_recording(self) -> float:
        """Returns the recording's duration; raises MediaError."""
        ...

    def get_stats(self) -> MediaStats: ...

    def dump(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


MediaFactory = Callable[[str, MediaEventHandler, PeerLostHandler], MediaFacade]
"""Makes a room's media: (room name, event handler, peer-lost handler) → façade."""

_WIRE_CODES = {
    MediaErrorKind.INVALID_OFFER: ErrorCode.INVALID_SDP,
    MediaErrorKind.INVALID_STATE: ErrorCode.INVALID_STATE,
    MediaErrorKind.ALREADY_RECORDING: ErrorCode.ALREADY_RECORDING,
    MediaErrorKind.NOT_RECORDING: ErrorCode.NOT_RECORDING,
}


def refusal(error: MediaError) -> PodiumError:
    """The wire error a media refusal is sent as."""
    return PodiumError(_WIRE_CODES[error.kind], error.message)
