"""A room at the session level: who is connected, the stage, chat, attendees and media.

Requests are applied to the sans-I/O Stage / Chat / AttendeeList first; only
the events they return are turned into media changes and messages, so a
refused request changes nothing anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sfu.activity import SpeakingChanged
from sfu.dominant_speaker import DominantSpeakerChanged
from sfu.events import RouterEvent, SlotsChanged
from sfu.mixer import MIX, MediaMode, MediaModeChanged, is_mix
from sfu.rtc.media_room import MediaRoom
from sfu.rtc.udp_mux import UdpMux
from signaling.attendees import AttendeeDelta, AttendeeList
from signaling.chat import Chat, ChatMessage
from signaling.config import RoomSettings, ServerConfig
from signaling.errors import ErrorCode, PodiumError
from signaling.observer import NO_OBSERVER, RoomObserver
from signaling.participant import (
    Outbox,
    Participant,
    attendee_info,
    identity_of,
    person_info,
)
from signaling.protocol import encode_event
from signaling.resume import DETACHED, SeatHolds
from signaling.roles import Role
from signaling.stage import (
    HandLowered,
    HandRaised,
    InviteCancelled,
    Invited,
    InviteDeclined,
    Joined,
    Left,
    Muted,
    ProfileChanged,
    Removed,
    RoleChanged,
    RoomEnded,
    Stage,
    StageEvent,
)
from signaling.tokens import AccessToken

logger = logging.getLogger(__name__)

_MODERATORS = (Role.HOST, Role.MODERATOR)


def message_info(message: ChatMessage) -> dict[str, Any]:
    return asdict(message)


class Room:
    def __init__(
        self,
        name: str,
        config: ServerConfig,
        on_empty: Callable[[Room], Awaitable[None]],
        settings: RoomSettings | None = None,
        observer: RoomObserver = NO_OBSERVER,
        udp: UdpMux | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.settings = settings or config.room  # per room when made through the server API
        self.sid = f"RM_{secrets.token_hex(8)}"  # tells apart successive rooms of one name
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}
        self.stage = Stage(self.settings.stage)
        self.chat = Chat(self.settings.chat)
        self.attendees = AttendeeList(self.settings.attendees)
        self.media = MediaRoom(name, config.media, self._media_event, self._peer_lost, udp)
        self.media.set_media_mode(MediaMode(self.settings.media_mode))
        self._on_empty = on_empty
        self._attendee_timer: asyncio.TimerHandle | None = None
        self.seats = SeatHolds(name, config.resume_window)
        self._hold_timer: asyncio.TimerHandle | None = None
        self._reconnecting: set[str] = set()  # announced to the others as reconnecting
        self._media_lost: set[str] = set()  # peer connection died; a new offer is due
        self.observer = observer
        observer.room_started(self)

    def info(self) -> dict[str, Any]:
        counts = self.attendees.counts()
        return {
            "name": self.name,
            "created_at": self.created_at,
            "num_participants": len(self.participants),
            "counts": {str(role): counts.get(role, 0) for role in Role},
            "media_mode": self.media_mode_info(),
            "recording": self.media.mixing.recording is not None,
        }

    def role(self, identity: str) -> Role:
        return self.stage.member(identity).role

    # -- membership ------------------------------------------------------
    async def admit(self, token: AccessToken, outbox: Outbox) -> Participant:
        """Add a participant; an identity already present is replaced (its old session closed)."""
        if self.stage.is_banned(token.identity):
            raise PodiumError("banned", "you were banned from this room")
        identity = identity_of(token)
        if token.identity in self.participants:
            # Refused before the old session is touched: a refusal must not cost it its seat.
            self.stage.check_admission(identity, token.role, replacing=token.identity)
            # Not "empty" in between: the room (its bans, chat, attendance) must survive.
            await self.remove(token.identity, "duplicate_identity", release=False)
        now = time.time()
        event = self.stage.join(identity.user_id, identity, token.role, now)  # may refuse
        participant = Participant(identity, token.metadata, outbox)
        self.participants[participant.id] = participant
        self.media.join(participant.id, may_publish=token.role.on_stage)
        self.media.set_muted(participant.id, self.stage.member(participant.id).muted)
        self.apply(event, now)
        return participant

    async def remove(self, identity: str, reason: str, release: bool = True) -> None:
        """Release everything the participant holds: stage seat, routing, slots, peer.

        ``release=False`` keeps an emptied room from being handed to the server
        for closing (a replacement session is about to join)."""
        participant = self.participants.pop(identity, None)
        if participant is None:
            return
        self.seats.release(identity)
        self._reconnecting.discard(identity)
        self._media_lost.discard(identity)
        self._schedule_holds()
        if not self.stage.ended and identity in self.stage:  # a removal already dropped it
            now = time.time()
            self.apply(self.stage.leave(identity, now), now)
        self.chat.forget(identity)
        self.observer.participant_left(self, participant, reason)
        participant.outbox.close(reason)
        await self.media.leave(identity)
        if release and not self.participants:
            await self._on_empty(self)

    # -- lost connections (signaling.resume) ---------------------------------
    def suspend(self, identity: str, outbox: Outbox) -> bool:
        """``outbox``'s connection is gone: hold the seat rather than release it.

        False when the seat is not to be held (no resume window, room ended);
        True also when ``outbox`` no longer serves the participant (resumed elsewhere).
        """
        participant = self.participants.get(identity)
        if participant is None or participant.outbox is not outbox:
            return True
        if self.seats.window <= 0 or self.stage.ended:
            return False
        participant.outbox = DETACHED
        self.seats.hold(identity, time.time())
        self._reconnecting.add(identity)
        self.broadcast("reconnecting", {"participant": identity})
        self._schedule_holds()
        return True

    def resume(self, identity: str, outbox: Outbox) -> Participant:
        """Hand ``identity``'s seat to a new connection (a socket still open is closed)."""
        participant = self.participants[identity]
        previous, participant.outbox = participant.outbox, outbox
        previous.close("resumed")
        self.seats.end_hold(identity)
        if identity in self._media_lost:  # the socket is back; the media must follow
            self.seats.hold(identity, time.time(), media=True)
        self._schedule_holds()
        if identity in self._reconnecting:
            self._reconnecting.discard(identity)
            self.broadcast("reconnected", {"participant": identity}, exclude=identity)
        return participant

    def media_up(self, identity: str) -> bool:
        """Whether ``identity`` has no lost peer connection waiting to be replaced."""
        return identity not in self._media_lost

    def media_restored(self, identity: str) -> None:
        """A new peer connection replaced a lost one."""
        if identity in self._media_lost:
            self._media_lost.discard(identity)
            hold = self.seats.held(identity)
            if hold is not None and hold.media:
                self.seats.end_hold(identity)
                self._schedule_holds()

    def resend_slots(self, identity: str) -> None:
        """Tell a resumed client its current slot layout (it missed the changes)."""
        media = self.media.room.participants.get(identity)
        if media is not None and media.consumers:
            self._media_event(SlotsChanged(identity, media.layout))

    def _schedule_holds(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        due = self.seats.next_deadline()
        if due is not None:
            delay = max(0.0, due - time.time())
            self._hold_timer = asyncio.get_running_loop().call_later(delay, self._expire_holds)

    def _expire_holds(self) -> None:
        self._hold_timer = None
        for identity in self.seats.expired(time.time()):
            hold = self.seats.end_hold(identity)
            reason = "media_failed" if hold is not None and hold.media else "connection_lost"
            self._close_later(identity, reason)
        self._schedule_holds()

    # -- events → media and messages --------------------------------------
    def apply(self, event: StageEvent, now: float) -> None:
        """Carry out what the stage decided."""
        match event:
            case Joined(participant=pid, identity=identity, role=role):
                self.attendees.join(pid, identity, role, now)
            case Left(participant=pid):
                self.attendees.leave(pid, now)
            case Removed(participant=pid, banned=banned):
                self.attendees.leave(pid, now)
                self._to_moderators("participant_removed", _jsonable(event), also=())
                self._close_later(pid, "banned" if banned else "removed")
            case RoleChanged(participant=pid, new=new):
                self.attendees.set_role(pid, new, now)
                self.media.set_publish_allowed(pid, event.can_publish)
                self.media.set_muted(pid, self.stage.member(pid).muted)
                self.broadcast("role_changed", _jsonable(event))
            case Muted(participant=pid, muted=muted):
                self.media.set_muted(pid, muted)
                self.broadcast("muted", _jsonable(event))
            case HandRaised(participant=pid) | HandLowered(participant=pid):
                name = "hand_raised" if isinstance(event, HandRaised) else "hand_lowered"
                self._to_moderators(name, _jsonable(event), also=(pid,))
            case (
                Invited(participant=pid)
                | InviteCancelled(participant=pid)
                | InviteDeclined(participant=pid)
            ):
                name = {Invited: "invited", InviteCancelled: "invite_cancelled"}.get(
                    type(event), "invite_declined"
                )
                self._to_moderators(name, _jsonable(event), also=(pid,))
            case RoomEnded():
                self.broadcast("room_ended", _jsonable(event))
                for pid in list(self.participants):
                    self._close_later(pid, "room_ended")
            case ProfileChanged(participant=pid, identity=identity):
                self.attendees.set_identity(pid, identity, now)  # clients learn from the delta
                if (participant := self.participants.get(pid)) is not None:
                    participant.identity = identity
        self._schedule_attendees()
        self.observer.stage_event(self, event, now)

    def _close_later(self, identity: str, reason: str) -> None:
        """Remove after the current request's reply has been queued."""
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self.remove(identity, reason))
        )

    # -- attendee deltas -------------------------------------------------
    def _schedule_attendees(self) -> None:
        if self._attendee_timer is not None:
            self._attendee_timer.cancel()
            self._attendee_timer = None
        due = self.attendees.get_timer()
        if due is None:
            return
        delay = max(0.0, due - time.time())
        self._attendee_timer = asyncio.get_running_loop().call_later(delay, self._flush_attendees)

    def _flush_attendees(self) -> None:
        self._attendee_timer = None
        delta = self.attendees.poll(time.time())
        if delta is not None:
            self.broadcast("attendees", delta_info(delta))
        self._schedule_attendees()

    # -- sending -----------------------------------------------------------
    def broadcast(self, event: str, data: dict[str, Any], exclude: str | None = None) -> None:
        """Encode once, enqueue to everyone: a slow client never delays the others."""
        self._send_to(self.participants, event, data, exclude)

    def _to_moderators(self, event: str, data: dict[str, Any], also: Iterable[str]) -> None:
        extra = set(also)
        targets = [
            pid
            for pid in self.participants
            if pid in extra or (pid in self.stage and self.stage.member(pid).role in _MODERATORS)
        ]
        self._send_to(targets, event, data)

    def _send_to(
        self,
        identities: Iterable[str],
        event: str,
        data: dict[str, Any],
        exclude: str | None = None,
    ) -> None:
        text = encode_event(event, data)
        for identity in list(identities):
            participant = self.participants.get(identity)
            if participant is not None and identity != exclude:
                participant.outbox.send(text)

    def send(self, identity: str, event: str, data: dict[str, Any]) -> None:
        self._send_to((identity,), event, data)

    def _media_event(self, event: RouterEvent) -> None:
        match event:
            case SlotsChanged(subscriber_id=subscriber, slots=slots):
                # A speaker's own mix-minus is "the mix" to its client too.
                layout = [MIX if is_mix(source) else source for source in slots]
                self.send(subscriber, "slots", {"slots": layout})
            case SpeakingChanged(changes=changes):
                speakers = [
                    {"participant": c.producer_id, "level": c.level, "speaking": c.speaking}
                    for c in changes
                ]
                self.broadcast("speaking", {"speakers": speakers})
            case DominantSpeakerChanged(producer_id=dominant, previous=previous):
                self.broadcast("dominant_speaker", {"participant": dominant, "previous": previous})
            case MediaModeChanged():
                self.broadcast("media_mode", self.media_mode_info())

    # -- media mode and recording ------------------------------------------
    def set_media_mode(self, mode: MediaMode) -> dict[str, Any]:
        self.media.set_media_mode(mode)  # everyone gets media_mode if anything changed
        return self.media_mode_info()

    def media_mode_info(self) -> dict[str, Any]:
        mixing = self.media.mixing
        return {"mode": str(mixing.mode), "mixing": mixing.active}

    def start_recording(self, by: str) -> dict[str, Any]:
        """Record the room's mix to a new file; everyone is told (``by`` "" is the platform)."""
        directory = self.config.recordings_dir
        if directory is None:
            raise PodiumError(ErrorCode.RECORDING_UNAVAILABLE, "this server keeps no recordings")
        if self.media.mixing.recording is not None:
            raise PodiumError(ErrorCode.ALREADY_RECORDING, "the room is being recorded already")
        path = Path(directory) / recording_name(self.name, time.time())
        try:
            recording = self.media.mixing.start_recording(path)
        except OSError as exc:
            logger.error("room %s: cannot record to %s: %s", self.name, path, exc)
            refused = PodiumError(ErrorCode.RECORDING_UNAVAILABLE, "cannot write the recording")
            raise refused from exc
        info = {"recording": path.name, "by": by, "at": recording.started_at}
        self.broadcast("recording_started", info)
        return info

    def stop_recording(self, by: str) -> dict[str, Any]:
        recording = self.media.mixing.recording
        if recording is None:
            raise PodiumError(ErrorCode.NOT_RECORDING, "the room is not being recorded")
        duration = self.media.mixing.stop_recording()
        info = {"recording": recording.path.name, "by": by, "duration": round(duration, 3)}
        self.broadcast("recording_finished", info)
        return info

    async def _peer_lost(self, identity: str, state: str) -> None:
        """The media path died (ICE failed, consent expired): hold the seat for a new offer."""
        logger.info("room %s: %s's peer connection %s", self.name, identity, state)
        if self.seats.window <= 0 or identity not in self.participants:
            await self.remove(identity, "media_failed")
            return
        self._media_lost.add(identity)
        self.seats.hold(identity, time.time(), media=True)
        self._schedule_holds()
        self.send(identity, "media_lost", {"state": state})

    async def close(self, reason: str) -> None:
        if self._attendee_timer is not None:
            self._attendee_timer.cancel()
            self._attendee_timer = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for identity in list(self.participants):
            await self.remove(identity, reason)
        self.observer.room_finished(self, reason)
        await self.media.close()

    # -- views -------------------------------------------------------------
    def stage_view(self, viewer: str) -> dict[str, Any]:
        on_stage = [m for m in self.stage.members() if m.on_stage]
        view: dict[str, Any] = {
            "speakers": [
                {**person_info(m.identity, m.role, m.joined_at), "muted": m.muted} for m in on_stage
            ]
        }
        if self.role(viewer) in _MODERATORS:
            view["hand_queue"] = self.stage.hand_queue()
        me = self.stage.member(viewer)
        # Your own raised hand and pending invitation: a listener's UI needs them after
        # a page reload as much as a moderator's needs the queue.
        view["you"] = {
            "hand_raised": viewer in self.stage.hand_queue(),
            "invited_by": me.invited_by,
        }
        return view

    def dump(self) -> dict[str, Any]:
        return {
            **self.info(),
            "stage": _jsonable(self.stage.snapshot()),
            "media": self.media.dump(),
        }


def recording_name(room: str, at: float) -> str:
    """A file name unique to this recording that says which room and when (UTC)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", room)[:64]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    return f"{safe}-{stamp}-{secrets.token_hex(3)}.ogg"


def delta_info(delta: AttendeeDelta) -> dict[str, Any]:
    return {
        "version": delta.version,
        "joined": [attendee_info(a) for a in delta.joined],
        "left": list(delta.left),
        "updated": [attendee_info(a) for a in delta.updated],
        "counts": {str(role): n for role, n in delta.counts.items()},
        "total": delta.total,
    }


def _jsonable(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = asdict(obj)
    return {k: (str(v) if isinstance(v, Role) else v) for k, v in data.items()}
