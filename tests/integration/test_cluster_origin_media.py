"""The origin's media façade tells each edge what the room decided, and only what concerns it."""

from __future__ import annotations

from typing import Any

from sfu.config import MediaConfig
from sfu.rtc.media_room import MediaRoomSetup
from sfu.rtc.relay import RelayEndpoint
from signaling.server.cluster.media import OriginMedia


async def _noop(identity: str, state: str) -> None:
    return None


async def test_commands_go_to_the_participants_edge_and_drops_to_the_others() -> None:
    sent: list[tuple[str, str, str, bool]] = []
    placement = {"bob": ("B", "b1"), "carol": ("C", "c1"), "cleo": ("C", "c2")}

    def command(node: str, message: dict[str, Any]) -> None:
        assert message["room"] == "r" and message["origin"] == "A"
        sent.append((node, message["op"], message["pid"], message["value"]))

    media = OriginMedia(
        MediaRoomSetup("r", MediaConfig(), lambda e: None, _noop), RelayEndpoint("127.0.0.1"),
        "A", lambda room, pid: placement.get(pid), command,
    )  # fmt: skip
    media.join("alice", True)  # connected to the origin itself: nobody is told
    media.join("bob", False)
    media.join("carol", False)
    media.join("cleo", False)
    assert sent == [("B", "join", "bob", False), ("C", "join", "carol", False),
                    ("C", "join", "cleo", False)]  # fmt: skip
    assert media.plan.edges == ("B", "C")

    sent.clear()
    media.set_publish_allowed("carol", True)  # invited on stage
    media.set_muted("carol", False)
    assert sent == [("C", "allow", "carol", True), ("C", "mute", "carol", False)]

    sent.clear()
    media.set_publish_allowed("carol", False)  # back to the audience: B stops hearing her
    assert sent == [("B", "drop", "carol", False), ("C", "allow", "carol", False)]

    sent.clear()
    await media.leave("bob")  # a listener: nothing was relayed, nothing to drop
    assert sent == [("B", "leave", "bob", False)]
    assert list(media.plan.edges) == ["C"]
    sent.clear()
    await media.leave("alice")  # a speaker on the origin: every edge forgets her
    assert sent == [("C", "drop", "alice", False)]
    await media.close()
