"""The Python client SDK: join a room, publish a track, receive the slots."""

from signaling.client.client import Event, PodiumClient, Slot

__all__ = ["Event", "PodiumClient", "Slot"]
