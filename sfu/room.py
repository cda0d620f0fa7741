"""One room's media router: producers, consumer slots, slot policy and routing table.

Sans-I/O: every input carries ``now``; outputs are the consumers a packet goes
to (``on_rtp``) and events (``next_event``).  Any change that can move a
speaker in or out of a slot (join, leave, role, mute, uplink) re-runs the slot
policy and rebuilds the routing snapshot before returning, so the very next
packet already follows the new routing.

Packets are routed to slot streams (``sfu/streams.py``), not to subscribers:
the audience shares one stream per slot, laid out once for all of it, so a
listener costs the packet path no header work; ranked speakers (who must not
hear themselves) and subscribers with an unusual slot count get personal ones.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy.typing as npt

from sfu.activity import ActivityObserver
from sfu.consumer import Consumer
from sfu.events import RouterEvent, SlotsChanged
from sfu.forwarder import Forwarder
from sfu.levels import pcm_level
from sfu.mixer import Mixer
from sfu.participant import Participant
from sfu.producer import DTX_MAX_BYTES, VOICE_LEVEL, Producer
from sfu.routing import RoutingTable
from sfu.rtp import SILENCE_LEVEL
from sfu.slots import ArrivalOrderPolicy, Layout, Ranking, SlotPolicy, assign_slots
from sfu.stats import DropReason
from sfu.streams import Sink, SlotFormat, SlotStream, StreamKey

_NO_TARGETS: tuple[SlotStream, ...] = ()


class Room:
    def __init__(
        self,
        room_id: str,
        policy: SlotPolicy | None = None,
        observer: ActivityObserver | None = None,
        slots: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.id = room_id
        self.policy: SlotPolicy = policy or ArrivalOrderPolicy()
        self.observer = observer or ActivityObserver()
        self.participants: dict[str, Participant] = {}
        # The producers a slot policy may pick: ranked every tick, so kept apart
        # from an audience of thousands.
        self._routable: dict[str, Producer] = {}
        self.routing = RoutingTable()
        self.dropped: Counter[str] = Counter()
        self._events: deque[RouterEvent] = deque()
        self._ranking = Ranking()
        # Subscribers with an empty slot: a speech onset may take one at once.
        self._free: set[str] = set()
        # Producers whose onset found no slot since the last tick: not retried per packet.
        self._onset_refused: set[str] = set()
        self.onsets = 0
        """Packets that took an empty slot at once (``on_rtp``), not at a tick."""
        self.mixer: Mixer | None = None
        """Set in mix mode: its layouts replace the slot policy's, speakers' packets go to it."""
        self.slots = slots
        self.audience: Layout = (None,) * slots
        """The layout every subscriber with ``slots`` slots who is not excluded shares."""
        self.streams: dict[StreamKey, SlotStream] = {}
        self._rng = rng or random.Random()
        self._ssrcs: list[int] = []

    # -- membership -------------------------------------------------------
    def join(self, participant_id: str, may_publish: bool, now: float) -> Participant:
        if participant_id in self.participants:
            raise ValueError(f"participant {participant_id!r} already in room {self.id!r}")
        producer = Producer(participant_id, allowed=may_publish, stage_since=now)
        participant = Participant(participant_id, producer)
        self.participants[participant_id] = participant
        self._observe(producer)
        return participant

    def leave(self, participant_id: str, now: float) -> None:
        participant = self.participants.pop(participant_id, None)
        if participant is not None:
            self._routable.pop(participant_id, None)
            self._free.discard(participant_id)
            if participant_id in self.observer.producers:
                self.observer.remove_producer(participant_id)
            # Its own consumers must leave their streams even if nobody else's layout changes.
            for consumer in participant.consumers:
                self._move(consumer, None, now)
            self._reassign(now, rebuild=bool(participant.consumers))

    def slot_ssrcs(self, count: int) -> tuple[int, ...]:
        """The SSRC of each slot: the same for every subscriber, so their streams can be."""
        while len(self._ssrcs) < count:
            ssrc = self._rng.getrandbits(32)
            if ssrc and ssrc not in self._ssrcs:
                self._ssrcs.append(ssrc)
        return tuple(self._ssrcs[:count])

    def attach_slots(self, participant_id: str, formats: Sequence[SlotFormat], now: float) -> None:
        """``participant_id`` negotiated these slots (their SSRCs are ``slot_ssrcs``)."""
        participant = self.participants[participant_id]
        # A new transport for a participant that had one (a client resuming after its
        # media path died): the old slots leave their streams and the new ones are bound
        # as a newcomer's; slot SSRCs are the room's, so its streams carry on.
        replaced = participant.consumers
        for consumer in replaced:
            self._move(consumer, None, now)
        participant.shared = False
        participant.consumers = tuple(
            Consumer(participant_id, slot, fmt) for slot, fmt in enumerate(formats)
        )
        self._events.append(SlotsChanged(participant_id, participant.layout))
        self._reassign(now, rebuild=bool(replaced), newcomer=participant)

    def set_sinks(self, participant_id: str, sinks: Sequence[Sink | None]) -> None:
        """The I/O layer can now write to ``participant_id``'s slots (transport up), or
        writes elsewhere (the same transport on a new path: what was sent still counts)."""
        participant = self.participants.get(participant_id)
        if participant is None:
            return
        for consumer, sink in zip(participant.consumers, sinks, strict=True):
            stream = consumer.stream
            if stream is not None:
                stream.remove(consumer)
            moved = consumer.sink is not None and sink is not None
            consumer.sink = sink
            consumer.rebase(stream, carry=moved)  # else it is sent what comes from now on
            if stream is not None:
                stream.add(consumer)

    def clear_sinks(self, participant_id: str) -> None:
        """``participant_id``'s transport is gone: its slots stay bound, written to by nobody."""
        participant = self.participants.get(participant_id)
        if participant is not None:
            self.set_sinks(participant_id, [None] * len(participant.consumers))

    def set_uplink(self, participant_id: str, present: bool, now: float) -> None:
        """``participant_id``'s (new) peer connection has an uplink, or none.

        A new peer connection's uplink numbers its packets afresh (new SSRC, random
        sequence number and timestamp): the streams carrying it resync as on a switch.
        Otherwise their numbering jumps by a random amount, which SRTP refuses as a
        replay half the time (the subscribers hear nothing until it wraps round)."""
        if present:
            for stream in self.routing.targets(participant_id):
                stream.forwarder.detach()
        self._update(participant_id, now, has_uplink=present)

    def set_publish_allowed(self, participant_id: str, allowed: bool, now: float) -> None:
        producer = self.participants[participant_id].producer
        if allowed and not producer.allowed:
            producer.stage_since = now
        self._update(participant_id, now, allowed=allowed)

    def set_muted(self, participant_id: str, muted: bool, now: float) -> None:
        self._update(participant_id, now, muted=muted)

    def set_mixer(self, mixer: Mixer | None, now: float) -> None:
        """Enter (a Mixer) or leave (None) mix mode: every subscriber's layout changes now."""
        self.mixer = mixer
        self._reassign(now)

    def _update(self, participant_id: str, now: float, **flags: bool) -> None:
        producer = self.participants[participant_id].producer
        before = producer.routable
        for name, value in flags.items():
            setattr(producer, name, value)
        if producer.routable:
            self._routable[participant_id] = producer
        else:
            self._routable.pop(participant_id, None)
        self._observe(producer)
        if producer.routable != before:
            self._reassign(now)

    def _observe(self, producer: Producer) -> None:
        """Only the stage is watched for activity: listeners cost the detectors nothing."""
        watched = producer.participant_id in self.observer.producers
        if producer.allowed and not watched:
            self.observer.add_producer(producer.participant_id)
        elif not producer.allowed and watched:
            self.observer.remove_producer(producer.participant_id)

    # -- packet path ------------------------------------------------------
    def on_rtp(
        self, participant_id: str, level: int | None, size: int, now: float
    ) -> tuple[SlotStream, ...]:
        """Account one inbound packet (``size``: its Opus payload); return the slot streams
        it must be written to.

        A voiced packet of a routable producer that has no slot while some
        subscriber has an empty one re-runs the slot policy at once, so the
        first packet of a talk spurt (or a lone short sound) is forwarded
        rather than waiting for the next tick; competing for full slots is
        left to the policy's hysteresis at the tick.
        """
        participant = self.participants.get(participant_id)
        if participant is None:
            self.dropped[DropReason.NO_ROUTE] += 1
            return _NO_TARGETS
        if size <= DTX_MAX_BYTES and level is not None:
            level = SILENCE_LEVEL
        producer = participant.producer
        producer.on_packet(level, size, now)
        if not producer.allowed:
            self.dropped[DropReason.NOT_ALLOWED] += 1
            return _NO_TARGETS
        if producer.muted:
            self.dropped[DropReason.MUTED] += 1
            return _NO_TARGETS
        if level is not None:
            self.observer.add_level(participant_id, level, now)
        if self.mixer is not None:
            return _NO_TARGETS  # mix mode: the I/O layer hands the packet to the mixer
        targets = self.routing.targets(participant_id)
        if not targets and level is not None and level <= VOICE_LEVEL:
            targets = self._onset(participant_id, now)
        if not targets:
            self.dropped[DropReason.NOT_SELECTED] += 1
        return targets

    def _onset(self, participant_id: str, now: float) -> tuple[SlotStream, ...]:
        # An empty slot: the audience's (shared by every listener), or a personal layout's
        # other than the speaker's own.
        free = None in self.audience or bool(self._free - {participant_id})
        if (
            participant_id in self._onset_refused
            or not free
            or not self.participants[participant_id].producer.routable
        ):
            return _NO_TARGETS
        self._reassign(now)
        targets = self.routing.targets(participant_id)
        if not targets:
            self._onset_refused.add(participant_id)
        else:
            self.onsets += 1
        return targets

    def selectable(self, participant_id: str) -> bool:
        """Whether the slot policy may yet route ``participant_id``'s packets (on stage,
        unmuted, forward mode): ``on_rtp`` found no route only because of the policy."""
        participant = self.participants.get(participant_id)
        return self.mixer is None and participant is not None and participant.producer.routable

    def wants_pcm(self, participant_id: str) -> bool:
        """Whether decoded audio is needed: a live producer whose packets carry no level."""
        participant = self.participants.get(participant_id)
        return participant is not None and participant.producer.routable

    def on_pcm(self, participant_id: str, samples: npt.NDArray[Any], now: float) -> None:
        """Decoded audio of one packet that carried no RFC 6464 level (decode fallback)."""
        self.participants[participant_id].producer.note_level(pcm_level(samples), now)
        self.observer.add_pcm(participant_id, samples, now)

    # -- policy -----------------------------------------------------------
    def tick(self, now: float) -> None:
        """Run the detectors; re-run the slot policy when the ranking moved."""
        self._events.extend(self.observer.tick(now))
        self._onset_refused.clear()
        if self._rank(now) != self._ranking:
            self._reassign(now)

    @property
    def ranking(self) -> Ranking:
        """The slot policy's current ranking (the mixer mixes its head)."""
        return self._ranking

    def _rank(self, now: float) -> Ranking:
        return self.policy.rank(list(self._routable.values()), self.observer.snapshot, now)

    def _reassign(
        self, now: float, rebuild: bool = False, newcomer: Participant | None = None
    ) -> None:
        """Re-rank and re-lay out; with the ranking unchanged a ``newcomer``'s slots are
        the only layout that can move (a join storm must not cost O(audience) each)."""
        previous, ranking = self._ranking, self._rank(now)
        self._ranking = ranking
        if self.mixer is not None:
            self.mixer.select(ranking)
            audience = self.mixer.audience_layout(self.slots)
            excluded = set(self.mixer.mixed)
        else:
            audience = assign_slots(self.audience, ranking, None)
            excluded = set(ranking.order)
        changed = rebuild
        if newcomer is not None and ranking == previous and audience == self.audience:
            participants: Iterable[Participant] = (newcomer,)
        else:
            participants = self.participants.values()
        for participant in participants:
            consumers = participant.consumers
            if not consumers:
                continue
            personal = participant.id in excluded or len(consumers) != self.slots
            if not personal and participant.shared:  # the audience's streams move for it
                if audience != self.audience:
                    self._events.append(SlotsChanged(participant.id, audience))
                continue
            old = participant.layout
            if personal:
                if self.mixer is not None:
                    new = self.mixer.layout(participant.id, len(old))
                else:
                    new = assign_slots(old, ranking, participant.id)
                changed |= self._bind(participant, new, now)
                if None in new:
                    self._free.add(participant.id)
                else:
                    self._free.discard(participant.id)
            else:
                new = audience
                changed |= self._bind(participant, None, now)
            if new != old:
                self._events.append(SlotsChanged(participant.id, new))
        if audience != self.audience:
            self.audience = audience
            for stream in self.streams.values():
                if stream.key.owner is None:
                    stream.assign(audience[stream.key.slot])
            changed = True
        if changed:
            self.routing.rebuild(self.streams.values())

    def _bind(self, participant: Participant, layout: Layout | None, now: float) -> bool:
        """Bind ``participant``'s slots to the audience's streams (``layout`` None) or to its
        personal ones carrying ``layout``; return whether the routing must be rebuilt."""
        owner = None if layout is None else participant.id
        participant.shared = owner is None
        changed = False
        for consumer in participant.consumers:
            key = StreamKey(consumer.slot, consumer.format, owner)
            stream = self.streams.get(key)
            forked = False
            if stream is None:
                if owner is not None and consumer.stream is not None:
                    stream, forked = consumer.stream.fork(key), True
                else:
                    stream = SlotStream(key, self._forwarder(key))
                    if owner is None:
                        stream.source = self.audience[key.slot]
                self.streams[key] = stream
                changed = True
            if stream is not consumer.stream:
                changed |= self._move(consumer, stream, now, forked)
            if layout is not None and stream.source != layout[consumer.slot]:
                stream.assign(layout[consumer.slot])
                changed = True
        return changed

    def _move(
        self, consumer: Consumer, stream: SlotStream | None, now: float, forked: bool = False
    ) -> bool:
        """Rebind ``consumer`` to ``stream``, its numbering running on; return whether a
        stream was left empty (and dropped)."""
        old = consumer.stream
        dropped = False
        if old is not None:
            old.remove(consumer)
            if not old.members:
                del self.streams[old.key]
                dropped = True
        if old is None or consumer.sink is None:  # it has been sent nothing yet
            consumer.seq_delta = consumer.ts_delta = 0
            consumer.marker_pending = False
        elif stream is not None and not forked:  # a fork's numbering is the same
            before, after = old.forwarder, stream.forwarder
            consumer.seq_delta = (
                before.last_sequence + consumer.seq_delta - after.last_sequence
            ) & 0xFFFF
            consumer.ts_delta = (
                before.rtp_timestamp_at(now) + consumer.ts_delta - after.rtp_timestamp_at(now)
            ) & 0xFFFFFFFF
            consumer.marker_pending = True
        consumer.rebase(stream, carry=True)
        if stream is not None:
            stream.add(consumer)
        return dropped

    def _forwarder(self, key: StreamKey) -> Forwarder:
        return Forwarder(
            ssrc=self.slot_ssrcs(key.slot + 1)[key.slot],
            payload_type=key.format.payload_type,
            red_payload_type=key.format.red_payload_type,
            level_ext_id=key.format.level_ext_id,
            initial_sequence=self._rng.getrandbits(15),
            initial_timestamp=self._rng.getrandbits(32),
        )

    # -- outputs ----------------------------------------------------------
    @property
    def has_events(self) -> bool:
        """Whether ``next_event`` has something (an onset may lay out slots mid-packet)."""
        return bool(self._events)

    def next_event(self) -> RouterEvent | None:
        return self._events.popleft() if self._events else None

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "participants": {
                pid: {
                    "allowed": p.producer.allowed,
                    "muted": p.producer.muted,
                    "has_uplink": p.producer.has_uplink,
                    "packets_in": p.producer.packets,
                    "slots": list(p.layout),
                }
                for pid, p in self.participants.items()
            },
            "routing": self.routing.dump(),
            "routing_entries": self.routing.entries,
            "audience": list(self.audience),
            "streams": {
                _stream_name(k): {
                    "source": s.source,
                    "receivers": s.receivers,
                    "packets": s.forwarder.packets,
                }
                for k, s in self.streams.items()
            },
            "dropped": dict(self.dropped),
            "onsets": self.onsets,
        }


def _stream_name(key: StreamKey) -> str:
    """``owner#slot/pt``, ``owner`` ``*`` for the audience's, ``pt`` RED's where it is RED."""
    payload = key.format.red_payload_type or key.format.payload_type
    return f"{key.owner or '*'}#{key.slot}/{payload}"
