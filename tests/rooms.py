"""Reaching the media adapter behind a room, for tests of the adapter itself."""

from __future__ import annotations

from sfu.rtc.media_room import MediaRoom
from signaling.room.room import Room


def media_of(room: Room) -> MediaRoom:
    """The room's real ``MediaRoom`` (signaling sees only its ``MediaFacade``)."""
    media = room.media
    assert isinstance(media, MediaRoom)
    return media
