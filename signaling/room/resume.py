"""Seats held through a lost connection, and the tokens that reclaim them (sans-I/O).

Mobile listeners walk through dead zones: a WebSocket or a media path that
drops for a few seconds must not cost anyone their seat (role, stage place,
raised hand, mute, slots, place in the attendee list).  Each participant gets
a secret resume token at join; while its connection is lost the seat is
*held* for ``window`` seconds, and a ``resume`` request with the token within
that time hands it back.  A hold that runs out is released as a leave.

No clock and no I/O: the room passes ``now`` and schedules ``next_deadline``.
Each successful claim issues the next token; the one just claimed stays good until
the new one is used, since the reply that carried the new one may have been lost
with the connection (the client then retries with the token it has).

A seat that a moderator or the room's end took while its connection was down
leaves its tokens in ``Endings`` for the window: the client that comes back is
told why (``removed``, ``banned``, ...), not just that its token is unknown.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from signaling.wire.errors import ErrorCode, PodiumError


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a seat is held and until when (``media``: the peer connection died, not the socket)."""

    until: float
    media: bool


TOLD_ON_RESUME = frozenset({"removed", "banned", "room_ended", "duplicate_identity"})
"""Why a seat may end while its connection is down that a returning client is told.

Not a window that ran out (``resume_failed`` says that) nor a leave (nobody resumes)."""


class SeatEnded(PodiumError):
    """``resume`` of a seat that ended for ``reason``: the client gets ``disconnected``."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.RESUME_FAILED, f"the seat was ended ({reason}): join again")
        self.reason = reason


class Endings:
    """Tokens of seats ended for a reason the client is to learn, kept for ``window`` s.

    Outlives a room (an ended room is closed at once), so the server keeps one
    for all its rooms."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._ended: OrderedDict[str, tuple[str, float]] = OrderedDict()  # token -> reason, until

    def note(self, token: str, reason: str, now: float) -> None:
        while self._ended and next(iter(self._ended.values()))[1] <= now:
            self._ended.popitem(last=False)
        if reason in TOLD_ON_RESUME and self.window > 0:
            self._ended[token] = (reason, now + self.window)

    def check(self, token: str, now: float) -> None:
        """Raise ``SeatEnded`` if ``token``'s seat was ended (for a reason told) lately."""
        ended = self._ended.get(token)
        if ended is not None and ended[1] > now:
            raise SeatEnded(ended[0])


class SeatHolds:
    """The resume tokens of one room and the seats it holds for lost connections."""

    def __init__(self, room: str, window: float, endings: Endings | None = None) -> None:
        self.room = room
        self.window = window
        self.endings = Endings(window) if endings is None else endings
        self._tokens: dict[str, str] = {}  # token -> identity (current and claimed ones)
        self._token_of: dict[str, str] = {}  # identity -> its current token
        self._claimed: dict[str, str] = {}  # identity -> the token it resumed with, still good
        self._holds: dict[str, Hold] = {}

    def issue(self, identity: str, claimed: str | None = None) -> str:
        """A fresh token for ``identity``; every other stops working but ``claimed`` (the
        one it just resumed with: its reply, and the new token, may never arrive).

        The room's name travels in the token so that the server can find the room.
        """
        self._forget_token(identity)
        token = f"{secrets.token_urlsafe(24)}.{self.room}"
        self._tokens[token] = identity
        self._token_of[identity] = token
        if claimed is not None:
            self._tokens[claimed] = identity
            self._claimed[identity] = claimed
        return token

    def state(self) -> dict[str, list[str]]:
        """Each identity's good tokens: a room taken over elsewhere still honours them."""
        return {
            identity: [token, *filter(None, [self._claimed.get(identity)])]
            for identity, token in self._token_of.items()
        }

    def restore_state(self, tokens: dict[str, list[str]]) -> None:
        for identity, (token, *claimed) in tokens.items():
            self._tokens[token] = identity
            self._token_of[identity] = token
            for old in claimed:
                self._tokens[old] = identity
                self._claimed[identity] = old

    def hold(self, identity: str, now: float, media: bool = False) -> Hold:
        """Keep ``identity``'s seat for ``window`` seconds (an earlier, sooner hold stays)."""
        current = self._holds.get(identity)
        if current is not None and current.until <= now + self.window:
            return current
        hold = self._holds[identity] = Hold(now + self.window, media)
        return hold

    def held(self, identity: str) -> Hold | None:
        return self._holds.get(identity)

    def end_hold(self, identity: str) -> Hold | None:
        return self._holds.pop(identity, None)

    def claim(self, token: str, now: float) -> str:
        """The identity ``token`` belongs to; raise ``resume_failed`` if it is not (any more)."""
        identity = self._tokens.get(token)
        if identity is None:
            self.endings.check(token, now)
            raise PodiumError(ErrorCode.RESUME_FAILED, "unknown resume token: join again")
        hold = self._holds.get(identity)
        if hold is not None and hold.until <= now:
            raise PodiumError(ErrorCode.RESUME_FAILED, "the seat was released: join again")
        return identity

    def expired(self, now: float) -> list[str]:
        """Identities whose hold has run out (their seats are to be released)."""
        return [identity for identity, hold in self._holds.items() if hold.until <= now]

    def next_deadline(self) -> float | None:
        return min((hold.until for hold in self._holds.values()), default=None)

    def release(self, identity: str, reason: str = "", now: float = 0.0) -> None:
        """``identity`` left for good (why: ``reason``): its tokens and any hold go."""
        for token in self._forget_token(identity):
            self.endings.note(token, reason, now)
        self._holds.pop(identity, None)

    def _forget_token(self, identity: str) -> list[str]:
        """Drop ``identity``'s good tokens (current and claimed); return them."""
        dropped = []
        for tokens in (self._token_of, self._claimed):
            token = tokens.pop(identity, None)
            if token is not None:
                self._tokens.pop(token, None)
                dropped.append(token)
        return dropped


def room_of(token: str) -> str | None:
    """The room a resume token names, or None if it is not shaped like one."""
    secret, dot, room = token.partition(".")
    return room if dot and secret and room else None


class Detached:
    """The outbox of a held seat: nobody is listening, so messages are dropped.

    A resumed client is sent the room's state afresh instead of what it missed.
    """

    def send(self, text: str) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


DETACHED = Detached()
