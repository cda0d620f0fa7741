"""A room at the session level: who is connected, the stage, chat, attendees and media.

Requests are applied to the sans-I/O Stage / Chat / AttendeeList first; only
the events they return are turned into media changes and messages, so a
refused request changes nothing anywhere.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sfu.activity import SpeakingChanged
from sfu.dominant_speaker import DominantSpeakerChanged
from sfu.errors import MediaError
from sfu.events import RouterEvent, SlotsChanged
from sfu.mixer import MIX, MediaMode, MediaModeChanged, is_mix
from signaling.room.attendees import AttendeeDelta, AttendeeList
from signaling.room.chat import Chat, ChatMessage, Reaction
from signaling.room.clock import Clock, TimerHandle
from signaling.room.media import MediaFactory, refusal
from signaling.room.participant import (
    Outbox,
    Participant,
    attendee_info,
    identity_of,
    person_info,
)
from signaling.room.resume import DETACHED, Endings, SeatHolds
from signaling.room.roles import Role
from signaling.room.settings import RoomSettings
from signaling.room.stage import (
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
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import (
    AttendeesDelta,
    MediaModeInfo,
    Message,
    ReactionData,
    RecordingFinished,
    RecordingStarted,
    RoomInfo,
    SpeakerLevel,
    StageView,
    counts,
    stage_event_message,
)
from signaling.wire.protocol import encode_event
from signaling.wire.tokens import AccessToken

logger = logging.getLogger(__name__)

_MODERATORS = (Role.HOST, Role.MODERATOR)


def message_info(message: ChatMessage) -> Message:
    return {"id": message.id, "sender": message.sender, "text": message.text, "at": message.at}


def reaction_info(reaction: Reaction) -> ReactionData:
    return {
        "sender": reaction.sender,
        "emoji": reaction.emoji,
        "message_id": reaction.message_id,
        "at": reaction.at,
    }


class RoomObserver:
    """What a Room tells the world outside its WebSockets (webhooks), from one place each.

    A Room calls these from the very code paths that change it: ``apply`` for every
    stage event, ``remove`` for every departure whatever its cause, ``close`` when
    it is gone. So an event caused by the server API and the same event caused by
    a moderator's WebSocket request are reported identically. Implementations must
    neither block nor raise: they run inside request handling.

    This one does nothing; ``signaling.server.webhooks.Webhooks`` is the real one.
    """

    def room_started(self, room: Room) -> None:
        """``room`` was created (by the server API or by its first join)."""

    def stage_event(self, room: Room, event: StageEvent, now: float) -> None:
        """``room.apply`` carried ``event`` out."""

    def participant_left(self, room: Room, participant: Participant, reason: str) -> None:
        """``participant`` is gone, for ``reason`` (the one its client was told)."""

    def room_finished(self, room: Room, reason: str) -> None:
        """``room`` closed: everyone has left, its media is being released."""


NO_OBSERVER = RoomObserver()


class Room:
    """The orchestrator: carries out what the stage decides, on media and on the wire.

    No I/O of its own: media through the ``MediaFacade`` protocol, time and deferred
    work through the ``Clock``, messages through each participant's ``Outbox``.
    """

    def __init__(
        self,
        name: str,
        settings: RoomSettings,
        media: MediaFactory,
        clock: Clock,
        on_empty: Callable[[Room], Awaitable[None]],
        observer: RoomObserver = NO_OBSERVER,
        recordings_dir: str | None = None,
        resume_window: float = 0.0,
        endings: Endings | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.recordings_dir = recordings_dir
        self.sid = f"RM_{secrets.token_hex(8)}"  # tells apart successive rooms of one name
        self.created_at = clock.time()
        self.participants: dict[str, Participant] = {}
        self.stage = Stage(self.settings.stage)
        self.chat = Chat(self.settings.chat)
        self.attendees = AttendeeList(self.settings.attendees)
        self.media = media(name, self._media_event, self._peer_lost)
        self.media.set_media_mode(MediaMode(self.settings.media_mode))
        self._on_empty = on_empty
        self._attendee_timer: TimerHandle | None = None
        self.seats = SeatHolds(name, resume_window, endings)
        self._hold_timer: TimerHandle | None = None
        self._reconnecting: set[str] = set()  # announced to the others as reconnecting
        self._media_lost: set[str] = set()  # peer connection died; a new offer is due
        self.observer = observer
        self.revision = 0
        """Bumped by every change to what ``state`` returns (a cluster copies it when it moves)."""
        observer.room_started(self)

    def info(self) -> RoomInfo:
        return {
            "name": self.name,
            "created_at": self.created_at,
            "num_participants": len(self.participants),
            "counts": counts(self.attendees.counts()),
            "media_mode": self.media_mode_info(),
            "recording": self.media.recording is not None,
        }

    def role(self, identity: str) -> Role:
        return self.stage.member(identity).role

    # -- membership ------------------------------------------------------
    async def admit(self, token: AccessToken, outbox: Outbox) -> Participant:
        """Add a participant; an identity already present is replaced (its old session closed)."""
        if self.stage.is_banned(token.identity):
            raise PodiumError(ErrorCode.BANNED, "you were banned from this room")
        identity = identity_of(token)
        if token.identity in self.participants:
            # Refused before the old session is touched: a refusal must not cost it its seat.
            self.stage.check_admission(identity, token.role, replacing=token.identity)
            # Not "empty" in between: the room (its bans, chat, attendance) must survive.
            await self.remove(token.identity, "duplicate_identity", release=False)
        now = self.clock.time()
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
        self.revision += 1
        self.seats.release(identity, reason, self.clock.time())
        self._reconnecting.discard(identity)
        self._media_lost.discard(identity)
        self._schedule_holds()
        if not self.stage.ended and identity in self.stage:  # a removal already dropped it
            now = self.clock.time()
            self.apply(self.stage.leave(identity, now), now)
        self.chat.forget(identity)
        self.observer.participant_left(self, participant, reason)
        participant.outbox.close(reason)
        await self.media.leave(identity)
        if release and not self.participants:
            await self._on_empty(self)

    async def connect_media(self, identity: str, offer_sdp: str, ice_restart: bool = False) -> str:
        """The SDP answer to a participant's offer."""
        try:
            return await self.media.connect(identity, offer_sdp, ice_restart)
        except MediaError as exc:
            raise refusal(exc) from exc

    # -- lost connections (signaling.room.resume) ---------------------------------
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
        self.seats.hold(identity, self.clock.time())
        self._reconnecting.add(identity)
        self.broadcast("reconnecting", {"participant": identity})
        self._schedule_holds()
        return True

    def resume(self, identity: str, outbox: Outbox) -> Participant:
        """Hand ``identity``'s seat to a new connection (a socket still open is closed)."""
        participant = self.participants[identity]
        previous, participant.outbox = participant.outbox, outbox
        previous.close("resumed")
        if self.media.reattach(identity):
            self._media_lost.add(identity)
        self.seats.end_hold(identity)
        if identity in self._media_lost:  # the socket is back; the media must follow
            self.seats.hold(identity, self.clock.time(), media=True)
        self._schedule_holds()
        if identity in self._reconnecting:
            self._reconnecting.discard(identity)
            self.broadcast("reconnected", {"participant": identity}, exclude=identity)
        return participant

    def resume_token(self, identity: str, claimed: str | None = None) -> str:
        """A fresh resume token for ``identity`` (``claimed``, the one it resumed with,
        stays good until the new one is used: SeatHolds.issue)."""
        self.revision += 1
        return self.seats.issue(identity, claimed)

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
        layout = self.media.layout(identity)
        if layout:
            self._media_event(SlotsChanged(identity, layout))

    def _schedule_holds(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        due = self.seats.next_deadline()
        if due is not None:
            delay = max(0.0, due - self.clock.time())
            self._hold_timer = self.clock.call_later(delay, self._expire_holds)

    def _expire_holds(self) -> None:
        self._hold_timer = None
        for identity in self.seats.expired(self.clock.time()):
            hold = self.seats.end_hold(identity)
            reason = "media_failed" if hold is not None and hold.media else "connection_lost"
            self._close_later(identity, reason)
        self._schedule_holds()

    # -- events → media and messages --------------------------------------
    def apply(self, event: StageEvent, now: float) -> None:
        """Carry out what the stage decided."""
        self.revision += 1
        match event:
            case Joined(participant=pid, identity=identity, role=role):
                self.attendees.join(pid, identity, role, now)
            case Left(participant=pid):
                self.attendees.leave(pid, now)
            case Removed(participant=pid, banned=banned):
                self.attendees.leave(pid, now)
                self._announce(event)
                self._close_later(pid, "banned" if banned else "removed")
            case RoleChanged(participant=pid, new=new):
                self.attendees.set_role(pid, new, now)
                self.media.set_publish_allowed(pid, event.can_publish)
                self.media.set_muted(pid, self.stage.member(pid).muted)
                self._announce(event)
            case Muted(participant=pid, muted=muted):
                self.media.set_muted(pid, muted)
                self._announce(event)
            case HandRaised() | HandLowered() | Invited() | InviteCancelled() | InviteDeclined():
                self._announce(event)
            case RoomEnded():
                self._announce(event)
                for pid in list(self.participants):
                    self._close_later(pid, "room_ended")
            case ProfileChanged(participant=pid, identity=identity):
                self.attendees.set_identity(pid, identity, now)  # clients learn from the delta
                if (participant := self.participants.get(pid)) is not None:
                    participant.identity = identity
        self._schedule_attendees()
        self.observer.stage_event(self, event, now)

    def _announce(self, event: StageEvent) -> None:
        """Send ``event`` as ``stage_event_message`` words it, to those who may know of it."""
        message = stage_event_message(event)
        if message is None:
            return
        name, data = message
        match event:
            case RoleChanged() | Muted() | RoomEnded():
                self.broadcast(name, data)
            case Removed():  # the removed participant gets only its disconnected
                self._to_moderators(name, data, also=())
            case HandRaised(participant=pid) | HandLowered(participant=pid):
                self._to_moderators(name, data, also=(pid,))
            case Invited(participant=pid) | InviteCancelled(participant=pid):
                self._to_moderators(name, data, also=(pid,))
            case InviteDeclined(participant=pid):
                self._to_moderators(name, data, also=(pid,))

    def _close_later(self, identity: str, reason: str) -> None:
        """Remove after the current request's reply has been queued."""
        self.clock.spawn(lambda: self.remove(identity, reason))

    # -- chat ----------------------------------------------------------------
    def send_chat(self, identity: str, text: str, now: float) -> Message:
        message = message_info(self.chat.send(identity, self.role(identity), text, now))
        self.revision += 1
        self.broadcast("chat", message)
        return message

    def react(self, identity: str, emoji: str, now: float, message_id: int | None) -> None:
        reaction = self.chat.react(identity, self.role(identity), emoji, now, message_id)
        self.broadcast("reaction", reaction_info(reaction))

    def pin(self, identity: str, message_id: int | None, now: float) -> None:
        """Pin ``message_id``, or clear the pin if None."""
        role = self.role(identity)
        if message_id is None:
            change = self.chat.unpin(identity, role, now)
        else:
            change = self.chat.pin(identity, role, message_id, now)
        self.revision += 1
        pinned = message_info(change.message) if change.message else None
        self.broadcast("pinned", {"message": pinned, "by": change.by})

    # -- attendee deltas -------------------------------------------------
    def _schedule_attendees(self) -> None:
        if self._attendee_timer is not None:
            self._attendee_timer.cancel()
            self._attendee_timer = None
        due = self.attendees.get_timer()
        if due is None:
            return
        delay = max(0.0, due - self.clock.time())
        self._attendee_timer = self.clock.call_later(delay, self._flush_attendees)

    def _flush_attendees(self) -> None:
        self._attendee_timer = None
        delta = self.attendees.poll(self.clock.time())
        if delta is not None:
            self.broadcast("attendees", delta_info(delta))
        self._schedule_attendees()

    # -- sending -----------------------------------------------------------
    def broadcast(self, event: str, data: Mapping[str, Any], exclude: str | None = None) -> None:
        """Encode once, enqueue to everyone: a slow client never delays the others."""
        self._send_to(self.participants, event, data, exclude)

    def _to_moderators(self, event: str, data: Mapping[str, Any], also: Iterable[str]) -> None:
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
        data: Mapping[str, Any],
        exclude: str | None = None,
    ) -> None:
        text = encode_event(event, data)
        for identity in list(identities):
            participant = self.participants.get(identity)
            if participant is not None and identity != exclude:
                participant.outbox.send(text)

    def send(self, identity: str, event: str, data: Mapping[str, Any]) -> None:
        self._send_to((identity,), event, data)

    def _media_event(self, event: RouterEvent) -> None:
        match event:
            case SlotsChanged(subscriber_id=subscriber, slots=slots):
                # A speaker's own mix-minus is "the mix" to its client too.
                layout = [MIX if is_mix(source) else source for source in slots]
                self.send(subscriber, "slots", {"slots": layout})
            case SpeakingChanged(changes=changes):
                speakers: list[SpeakerLevel] = [
                    {"participant": c.producer_id, "level": c.level, "speaking": c.speaking}
                    for c in changes
                ]
                self.broadcast("speaking", {"speakers": speakers})
            case DominantSpeakerChanged(producer_id=dominant, previous=previous):
                self.broadcast("dominant_speaker", {"participant": dominant, "previous": previous})
            case MediaModeChanged():
                self.broadcast("media_mode", self.media_mode_info())

    # -- media mode and recording ------------------------------------------
    def set_media_mode(self, mode: MediaMode) -> MediaModeInfo:
        self.media.set_media_mode(mode)  # everyone gets media_mode if anything changed
        self.revision += 1
        return self.media_mode_info()

    def media_mode_info(self) -> MediaModeInfo:
        state = self.media.media_mode
        return {"mode": state.mode, "mixing": state.mixing}

    def start_recording(self, by: str) -> RecordingStarted:
        """Record the room's mix to a new file; everyone is told (``by`` "" is the platform)."""
        directory = self.recordings_dir
        if directory is None:
            raise PodiumError(ErrorCode.RECORDING_UNAVAILABLE, "this server keeps no recordings")
        path = Path(directory) / recording_name(self.name, self.clock.time())
        try:
            started_at = self.media.start_recording(path)
        except MediaError as exc:
            raise refusal(exc) from exc
        except OSError as exc:
            logger.error("room %s: cannot record to %s: %s", self.name, path, exc)
            refused = PodiumError(ErrorCode.RECORDING_UNAVAILABLE, "cannot write the recording")
            raise refused from exc
        info: RecordingStarted = {"recording": path.name, "by": by, "at": started_at}
        self.broadcast("recording_started", info)
        return info

    def stop_recording(self, by: str) -> RecordingFinished:
        path = self.media.recording
        try:
            duration = self.media.stop_recording()
        except MediaError as exc:
            raise refusal(exc) from exc
        assert path is not None  # stop_recording refuses otherwise
        info: RecordingFinished = {
            "recording": path.name,
            "by": by,
            "duration": round(duration, 3),
        }
        self.broadcast("recording_finished", info)
        return info

    async def _peer_lost(self, identity: str, state: str) -> None:
        """The media path died (ICE failed, consent expired): hold the seat for a new offer."""
        logger.info("room %s: %s's peer connection %s", self.name, identity, state)
        if self.seats.window <= 0 or identity not in self.participants:
            await self.remove(identity, "media_failed")
            return
        self._media_lost.add(identity)
        self.seats.hold(identity, self.clock.time(), media=True)
        self._schedule_holds()
        self.send(identity, "media_lost", {"state": state})

    async def abandon(self) -> None:
        """This process lets the room go on elsewhere (a cluster node draining): nobody is
        removed and nothing is announced; the clients resume wherever the room goes on."""
        for timer in (self._attendee_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self._attendee_timer = self._hold_timer = None
        self.participants.clear()
        await self.media.close()

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

    # -- moving between nodes (cluster) ----------------------------------------
    def state(self) -> dict[str, Any]:
        """What must outlive this process for the room to go on elsewhere, as JSON-able data:
        stage (roles, hands, bans, attendance), attendee places, chat and pin, resume tokens."""
        return {
            "created_at": self.created_at,
            "settings": self.settings.state(),
            "media_mode": str(self.media.media_mode.mode),
            "metadata": {pid: dict(p.metadata) for pid, p in self.participants.items()},
            "stage": self.stage.state(),
            "attendees": self.attendees.state(),
            "chat": self.chat.state(),
            "seats": self.seats.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Go on from ``state`` (a fresh room; its previous home died or moved it away).

        Everyone in it holds their seat for the resume window, exactly as after a lost
        connection: their clients resume with the tokens they have, and negotiate media
        here afresh; whoever does not come back is released as a leave.
        """
        now = self.clock.time()
        self.created_at = float(state["created_at"])
        self.stage.restore_state(state["stage"])
        self.attendees.restore_state(state["attendees"])
        self.chat.restore_state(state["chat"])
        self.seats.restore_state(state["seats"])
        self.media.set_media_mode(MediaMode(state["media_mode"]))
        metadata = state["metadata"]
        for member in self.stage.members():
            pid = member.id
            self.participants[pid] = Participant(member.identity, metadata.get(pid, {}), DETACHED)
            self.media.join(pid, may_publish=member.on_stage)
            self.media.set_muted(pid, member.muted)
            self.seats.hold(pid, now)
            self._media_lost.add(pid)
            self._reconnecting.add(pid)
        self._schedule_holds()
        self.revision += 1

    # -- views -------------------------------------------------------------
    def stage_view(self, viewer: str) -> StageView:
        on_stage = self.stage.on_stage()
        me = self.stage.member(viewer)
        view: StageView = {
            "speakers": [
                {**person_info(m.identity, m.role, m.joined_at), "muted": m.muted} for m in on_stage
            ],
            # Your own raised hand and pending invitation: a listener's UI needs them after
            # a page reload as much as a moderator's needs the queue.
            "you": {"hand_raised": viewer in self.stage.hand_queue(), "invited_by": me.invited_by},
        }
        if self.role(viewer) in _MODERATORS:
            view["hand_queue"] = self.stage.hand_queue()
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


def delta_info(delta: AttendeeDelta) -> AttendeesDelta:
    return {
        "version": delta.version,
        "joined": [attendee_info(a) for a in delta.joined],
        "left": list(delta.left),
        "updated": [attendee_info(a) for a in delta.updated],
        "counts": counts(delta.counts),
        "total": delta.total,
    }


def _jsonable(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = asdict(obj)
    return {k: (str(v) if isinstance(v, Role) else v) for k, v in data.items()}
