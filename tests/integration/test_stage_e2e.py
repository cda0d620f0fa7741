"""Stage and moderation over real connections, with real audio."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from aiortc.rtp import RtpPacket

from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from signaling.wire.errors import PodiumError
from tests.conftest import LOOPBACK, Connect, eventually, token
from tests.media import ToneTrack, record, tone_level_db

SETTLE = 12_000


class PacketClock:
    """Arrival times of packets per slot, for a listener that does not decode."""

    def __init__(self) -> None:
        self.arrivals: dict[int, list[float]] = defaultdict(list)

    def __call__(self, slot: int, packet: RtpPacket) -> None:
        self.arrivals[slot].append(time.monotonic())

    def last(self, slot: int) -> float:
        return self.arrivals[slot][-1] if self.arrivals[slot] else 0.0


def slot_of(client: PodiumClient, identity: str) -> int | None:
    return next((s.index for s in client.slots if s.participant == identity), None)


async def heard(client: PodiumClient, identity: str, freq: float) -> bool:
    index = slot_of(client, identity)
    if index is None:
        return False
    track = client.slots[index].track
    assert track is not None
    samples = await record(track, 0.8)
    return tone_level_db(samples[SETTLE:], freq) > -30


async def stops_within(clock: PacketClock, slot: int, action: Callable[[], object]) -> float:
    """Run ``action``; return how long after it packets kept arriving in ``slot``."""
    await asyncio.sleep(0.3)
    assert time.monotonic() - clock.last(slot) < 0.1, "slot was not receiving before"
    started = time.monotonic()
    await action()  # type: ignore[misc]
    await asyncio.sleep(0.5)
    return clock.last(slot) - started


async def test_hand_invite_accept_mute_unmute_demote_remove_ban(
    server: PodiumServer, connect: Connect
) -> None:
    host = await connect("host", "host")
    guest = await connect("guest", "listener")
    listener = await connect("listener")
    clock = PacketClock()
    counter = await connect("counter", "listener", on_packet=clock)

    await guest.request("raise_hand")
    assert (await host.next_event("hand_raised")).data["participant"] == "guest"
    assert (await host.request("get_stage"))["hand_queue"] == ["guest"]
    assert (await guest.request("get_stage"))["you"] == {"hand_raised": True, "invited_by": None}
    await host.request("invite_to_stage", participant="guest")
    assert (await guest.next_event("invited")).data["by"] == "host"
    seen_by_guest = await guest.request("get_stage")
    assert "hand_queue" not in seen_by_guest  # the queue is for moderators
    assert seen_by_guest["you"] == {"hand_raised": True, "invited_by": "host"}
    await guest.request("accept_invite")
    assert (await listener.next_event("role_changed")).data["new"] == "speaker"
    await guest.publish(ToneTrack(660))
    await guest.request("unmute")  # on stage, but invitees arrive muted
    await eventually(lambda: slot_of(listener, "guest") is not None)
    assert await heard(listener, "guest", 660)

    # Moderator mute: forwarding stops server-side within 100 ms; the guest is told.
    slot = slot_of(counter, "guest")
    assert slot is not None
    lag = await stops_within(clock, slot, lambda: host.request("mute", participant="guest"))
    assert lag < 0.1, lag
    muted = await guest.next_event("muted", where=lambda d: d["by"] == "host")
    assert muted.data == {"participant": "guest", "by": "host", "muted": True}
    assert not await heard(listener, "guest", 660)
    with pytest.raises(PodiumError) as refused:
        await host.request("unmute", participant="guest")  # nobody unmutes someone else
    assert refused.value.code == "not_permitted"

    await guest.request("unmute")
    await eventually(lambda: slot_of(listener, "guest") is not None)
    assert await heard(listener, "guest", 660)

    # Demote: same guarantee.
    slot = slot_of(counter, "guest")
    assert slot is not None
    lag = await stops_within(
        clock, slot, lambda: host.request("move_to_audience", participant="guest")
    )
    assert lag < 0.1, lag
    assert not await heard(listener, "guest", 660)

    # Remove with ban: disconnected, and a fresh token for the identity is refused.
    await host.request("remove", participant="guest", ban=True, reason="spam")
    assert (await guest.next_event("disconnected")).data == {"reason": "banned"}
    await eventually(lambda: "guest" not in server.rooms["room1"].participants)
    with pytest.raises(PodiumError) as banned:
        await PodiumClient.connect(server.url, token("guest"), host_addresses=LOOPBACK)
    assert banned.value.code == "banned"


async def test_end_room_disconnects_everyone_with_a_reason(
    server: PodiumServer, connect: Connect
) -> None:
    host = await connect("host", "host")
    listener = await connect("listener", media=False)
    with pytest.raises(PodiumError) as refused:
        await listener.request("end_room")
    assert refused.value.code == "not_permitted"
    await host.request("end_room")
    for client in (host, listener):
        assert (await client.next_event("disconnected")).data == {"reason": "room_ended"}
    await eventually(lambda: "room1" not in server.rooms)


async def test_out_of_order_stage_requests_get_errors_and_change_nothing(
    server: PodiumServer, connect: Connect
) -> None:
    host = await connect("host", "host", media=False)
    speaker = await connect("speaker", "speaker", media=False)
    fan = await connect("fan", media=False)
    room = server.rooms["room1"]
    await fan.request("raise_hand")
    cases = [
        (fan, "accept_invite", {}, "no_invitation"),
        (host, "invite_to_stage", {"participant": "speaker"}, "already_on_stage"),
        (fan, "raise_hand", {}, "hand_already_raised"),
        (fan, "invite_to_stage", {"participant": "host"}, "not_permitted"),
        (host, "mute", {"participant": "nobody"}, "not_in_room"),
        (host, "invite_to_stage", {}, "invalid_request"),
        (speaker, "raise_hand", {}, "not_permitted"),
        (fan, "unmute", {}, "not_permitted"),
    ]
    for client, kind, data, code in cases:
        before = room.dump()["stage"]
        with pytest.raises(PodiumError) as info:
            await client.request(kind, **data)  # type: ignore[arg-type]
        assert info.value.code == code, (kind, info.value)
        assert room.dump()["stage"] == before, kind


async def test_attendee_pages_through_signaling(server: PodiumServer, connect: Connect) -> None:
    host = await connect("host", "host", media=False)
    for name in ("a", "b", "c"):
        await connect(name, media=False)
    for _ in range(100):  # audience joins reach the list in batches
        if (await host.request("get_attendees"))["total"] == 4:
            break
        await asyncio.sleep(0.05)
    first = await host.request("get_attendees", limit=2)
    assert [p["identity"] for p in first["items"]] == ["host", "a"]  # by role, then joined
    assert first["total"] == 4 and first["next_cursor"]
    rest = await host.request("get_attendees", limit=2, cursor=first["next_cursor"])
    assert [p["identity"] for p in rest["items"]] == ["b", "c"] and rest["next_cursor"] is None
    listeners = await host.request("get_attendees", role="listener")
    assert [p["identity"] for p in listeners["items"]] == ["a", "b", "c"]
    assert set(listeners["items"][0]) == {
        *("identity", "name", "headline", "avatar_url", "profile_url", "role", "joined_at")
    }
    for bad in ({"limit": 0}, {"limit": 101}, {"role": "king"}):
        with pytest.raises(PodiumError) as refused:
            await host.request("get_attendees", **bad)
        assert refused.value.code == "invalid_request", bad
