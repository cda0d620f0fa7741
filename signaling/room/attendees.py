"""The attendee list of one room: paged reads and batched deltas (sans-I/O).

A big room's audience churns constantly; sending every join and leave to every
listener would cost more than the audio. Audience changes are therefore
accumulated and published as one delta per ``batch_interval``; stage changes are
what people watch, so they go out at the next ``poll``.

Pages read the *published* state (as of ``version``), never unpublished
changes, so a client that loads pages and then applies every delta with a
higher version converges on the same list with no gaps or ghosts, even though
a join and a leave inside one interval cancel out and are never announced.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from signaling.room.roles import Role
from signaling.wire.errors import ErrorCode, PodiumError

_RANK = {role: rank for rank, role in enumerate(Role)}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who someone is across sessions: ``user_id`` keys bans and attendance."""

    user_id: str
    name: str
    headline: str = ""
    avatar_url: str = ""
    profile_url: str = ""


@dataclass(frozen=True, slots=True)
class Attendee:
    participant: str
    identity: Identity
    role: Role
    joined_at: float


@dataclass(frozen=True, slots=True)
class AttendeeConfig:
    batch_interval: float = 1.0
    max_page_size: int = 100

    def __post_init__(self) -> None:
        if self.batch_interval <= 0 or self.max_page_size < 1:
            raise ValueError(f"invalid attendee config: {self}")


@dataclass(frozen=True, slots=True)
class AttendeeDelta:
    """Net change since the previous delta; apply joined/updated as upserts, left as deletes."""

    version: int
    joined: tuple[Attendee, ...]
    left: tuple[str, ...]
    updated: tuple[Attendee, ...]  # role or profile changes of attendees already published
    counts: dict[Role, int]  # by role, after this delta
    total: int


@dataclass(frozen=True, slots=True)
class AttendeePage:
    items: tuple[Attendee, ...]
    next_cursor: str | None  # None on the last page
    total: int  # attendees matching the role filter
    version: int  # the delta this page is consistent with


class AttendeeList:
    """Ordered by role (hosts first), then by join order; the order never reshuffles."""

    def __init__(self, config: AttendeeConfig | None = None) -> None:
        self.config = config or AttendeeConfig()
        self._current: dict[str, Attendee] = {}
        self._published: dict[str, Attendee] = {}
        # Join order of every attendee that is current or still published.
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        # Sorted (rank, seq) keys of the published attendees; a cursor is one such key.
        self._order: list[tuple[int, int]] = []
        self._pid_at: dict[int, str] = {}
        self._counts = dict.fromkeys(Role, 0)
        self._dirty: set[str] = set()
        self._due: float | None = None
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    def counts(self) -> dict[Role, int]:
        return dict(self._counts)

    def join(self, participant: str, identity: Identity, role: Role, now: float) -> None:
        if participant in self._current:
            raise PodiumError(ErrorCode.ALREADY_IN_ROOM, f"{participant!r} is already listed")
        self._seq.setdefault(participant, next(self._counter))
        self._current[participant] = Attendee(participant, identity, role, now)
        self._touch(participant, now, immediate=role.on_stage)

    def leave(self, participant: str, now: float) -> None:
        attendee = self._get(participant)
        del self._current[participant]
        self._touch(participant, now, immediate=attendee.role.on_stage)

    def set_role(self, participant: str, role: Role, now: float) -> None:
        attendee = self._get(participant)
        if role is attendee.role:
            return
        self._current[participant] = replace(attendee, role=role)
        # Two distinct roles: at least one of them is on stage.
        self._touch(participant, now, immediate=True)

    def set_identity(self, participant: str, identity: Identity, now: float) -> None:
        """A new name or profile: published like a role change, in ``updated``."""
        attendee = self._get(participant)
        if identity == attendee.identity:
            return
        self._current[participant] = replace(attendee, identity=identity)
        self._touch(participant, now, immediate=attendee.role.on_stage)

    def state(self) -> dict[str, Any]:
        """The current list (published or not) with each attendee's place, as JSON-able data."""
        return {
            "version": self._version,
            "next_seq": max(self._seq.values(), default=-1) + 1,
            "attendees": [
                [self._seq[pid], pid, asdict(a.identity), str(a.role), a.joined_at]
                for pid, a in self._current.items()
            ],
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Become the list ``state`` describes, all of it published (into an empty list).

        Places (join order) are kept, so a page read before a takeover and one read after
        list the same people in the same order; the version moves on by one, so a client's
        next delta is never mistaken for one it has seen.
        """
        for seq, pid, identity, role, joined_at in sorted(state["attendees"]):
            attendee = Attendee(pid, Identity(**identity), Role(role), float(joined_at))
            self._current[pid] = attendee
            self._seq[pid] = seq
            self._publish(seq, attendee)
        self._counter = itertools.count(int(state["next_seq"]))
        self._version = int(state["version"]) + 1

    def get_timer(self) -> float | None:
        """When ``poll`` next has something to publish; re-read after every change."""
        return self._due

    def poll(self, now: float) -> AttendeeDelta | None:
        if self._due is None or now < self._due:
            return None
        joined: list[Attendee] = []
        left: list[str] = []
        updated: list[Attendee] = []
        for pid in sorted(self._dirty, key=self._seq.__getitem__):
            old, new = self._published.get(pid), self._current.get(pid)
            seq = self._seq[pid] if new is not None else self._seq.pop(pid)
            if old == new:  # no net change, e.g. joined and left within the interval
                continue
            if old is not None:
                self._unpublish(seq, old)
            if new is None:
                left.append(pid)
                continue
            self._publish(seq, new)
            (joined if old is None else updated).append(new)
        self._dirty.clear()
        self._due = None
        if not (joined or left or updated):
            return None
        self._version += 1
        return AttendeeDelta(
            version=self._version,
            joined=tuple(joined),
            left=tuple(left),
            updated=tuple(updated),
            counts=self.counts(),
            total=len(self._published),
        )

    def page(
        self, cursor: str | None = None, limit: int = 50, role: Role | None = None
    ) -> AttendeePage:
        if not 1 <= limit <= self.config.max_page_size:
            raise PodiumError(
                ErrorCode.INVALID_REQUEST,
                f"limit must be between 1 and {self.config.max_page_size}",
            )
        lo, hi = 0, len(self._order)
        if role is not None:
            lo = bisect_left(self._order, (_RANK[role], -1))
            hi = bisect_left(self._order, (_RANK[role] + 1, -1))
        start = lo if cursor is None else max(lo, bisect_right(self._order, _parse(cursor)))
        end = min(start + limit, hi)
        keys = self._order[start:end]
        return AttendeePage(
            items=tuple(self._published[self._pid_at[seq]] for _, seq in keys),
            next_cursor=f"{keys[-1][0]}.{keys[-1][1]}" if keys and end < hi else None,
            total=hi - lo,
            version=self._version,
        )

    def _get(self, participant: str) -> Attendee:
        attendee = self._current.get(participant)
        if attendee is None:
            raise PodiumError(ErrorCode.NO_SUCH_PARTICIPANT, f"{participant!r} is not listed")
        return attendee

    def _touch(self, participant: str, now: float, *, immediate: bool) -> None:
        self._dirty.add(participant)
        # The batching window opens at the first pending change, not at the last flush,
        # so a quiet room's first join waits at most one interval.
        due = now if immediate else now + self.config.batch_interval
        self._due = due if self._due is None else min(self._due, due)

    def _publish(self, seq: int, attendee: Attendee) -> None:
        insort(self._order, (_RANK[attendee.role], seq))
        self._pid_at[seq] = attendee.participant
        self._published[attendee.participant] = attendee
        self._counts[attendee.role] += 1

    def _unpublish(self, seq: int, attendee: Attendee) -> None:
        del self._order[bisect_left(self._order, (_RANK[attendee.role], seq))]
        del self._pid_at[seq]
        del self._published[attendee.participant]
        self._counts[attendee.role] -= 1


def _parse(cursor: str) -> tuple[int, int]:
    try:
        rank, seq = cursor.split(".")
        return int(rank), int(seq)
    except ValueError:
        raise PodiumError(ErrorCode.INVALID_REQUEST, f"malformed cursor {cursor!r}") from None
