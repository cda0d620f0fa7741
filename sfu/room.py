"""One room's media router: producers, consumer slots, slot policy and routing table.

Sans-I/O: every input carries ``now``; outputs are the consumers a packet goes
to (``on_rtp``) and events (``next_event``).  Any change that can move a
speaker in or out of a slot (join, leave, role, mute, uplink) re-runs the slot
policy and rebuilds the routing snapshot before returning, so the very next
packet already follows the new routing.
"""

from __future__ import annotations

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
from sfu.producer import Producer
from sfu.routing import RoutingTable
from sfu.slots import ArrivalOrderPolicy, Layout, Ranking, SlotPolicy, assign_slots

_NO_TARGETS: tuple[Consumer, ...] = ()


class Room:
    def __init__(
        self,
        room_id: str,
        policy: SlotPolicy | None = None,
        observer: ActivityObserver | None = None,
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
        self.mixer: Mixer | None = None
        """Set in mix mode: its layouts replace the slot policy's, speakers' packets go to it."""

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
            if participant_id in self.observer.producers:
                self.observer.remove_producer(participant_id)
            # Its own consumers must leave the routing snapshot even if nobody
            # else's layout changes.
            self._reassign(now, rebuild=bool(participant.consumers))

    def attach_slots(
        self, participant_id: str, forwarders: Sequence[Forwarder], now: float
    ) -> None:
        participant = self.participants[participant_id]
        # A new transport for a participant that had one keeps its slots' sources.
        previous = participant.layout
        participant.consumers = tuple(
            Consumer(participant_id, slot, fwd, previous[slot] if slot < len(previous) else None)
            for slot, fwd in enumerate(forwarders)
        )
        self._events.append(SlotsChanged(participant_id, participant.layout))
        # The routing snapshot holds the consumers themselves: replaced ones must leave it.
        self._reassign(now, rebuild=bool(previous), newcomer=participant)

    def set_uplink(self, participant_id: str, present: bool, now: float) -> None:
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
    ) -> tuple[Consumer, ...]:
        """Account one inbound packet; return the slots it must be written to."""
        participant = self.participants.get(participant_id)
        if participant is None:
            self.dropped["no_route"] += 1
            return _NO_TARGETS
        producer = participant.producer
        producer.on_packet(level, size, now)
        if not producer.allowed:
            self.dropped["not_allowed"] += 1
            return _NO_TARGETS
        if producer.muted:
            self.dropped["muted"] += 1
            return _NO_TARGETS
        if level is not None:
            self.observer.add_level(participant_id, level, now)
        if self.mixer is not None:
            return _NO_TARGETS  # mix mode: the I/O layer hands the packet to the mixer
        targets = self.routing.targets(participant_id)
        if not targets:
            self.dropped["not_selected"] += 1
        return targets

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
        ranked_set = set(ranking.order)
        memo: dict[tuple[Layout, str | None], Layout] = {}
        changed = rebuild
        if newcomer is not None and ranking == previous:
            participants: Iterable[Participant] = (newcomer,)
        else:
            participants = self.participants.values()
        for participant in participants:
            if not participant.consumers:
                continue
            old = participant.layout
            exclude = participant.id if participant.id in ranked_set else None
            key = (old, exclude)
            if self.mixer is not None:
                new: Layout | None = self.mixer.layout(participant.id, len(old))
            else:
                new = memo.get(key)
            if new is None:
                new = memo[key] = assign_slots(old, ranking, exclude)
            if new != old:
                for consumer, source in zip(participant.consumers, new, strict=True):
                    if consumer.source != source:
                        consumer.source = source
                        consumer.forwarder.detach()
                self._events.append(SlotsChanged(participant.id, new))
                changed = True
        if changed:
            self.routing.rebuild(c for p in self.participants.values() for c in p.consumers)

    # -- outputs ----------------------------------------------------------
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
            "dropped": dict(self.dropped),
        }
