"""STUN/TURN servers handed to clients, with their TURN credentials.

Browsers refuse a ``turn:`` URL without a username and credential, so every TURN
server is configured with one of:

- static credentials (``--turn-username``/``--turn-credential``): one account that every
  client gets, as coturn's ``lt-cred-mech`` with ``user=NAME:PASSWORD``;
- a shared secret (``--turn-secret``): coturn's ``use-auth-secret`` /
  ``static-auth-secret`` (the "TURN REST API"). Each join gets its own time-limited
  credential: username ``EXPIRY:IDENTITY`` (expiry in seconds since the epoch), password
  ``base64(HMAC-SHA1(secret, username))``. coturn recomputes the password from the
  username, so nothing is shared between the two servers but the secret, and a leaked
  credential stops working at its expiry.

The credential must outlive the session: TURN allocations are refreshed with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from signaling.wire.messages import IceServer as IceServerInfo

DEFAULT_CREDENTIAL_TTL = 24 * 3600.0

_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[^\s?:\[\]]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


@dataclass(frozen=True)
class IceServer:
    """An ICE server handed to clients (``stun:``/``turn:`` URLs) in every join response."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None
    secret: str | None = None
    """coturn's ``static-auth-secret``: a fresh credential per join instead of the static one."""
    credential_ttl: float = DEFAULT_CREDENTIAL_TTL
    """How long a credential minted from ``secret`` is valid."""

    def __post_init__(self) -> None:
        for url in self.urls:
            check_url(url)
        needs_credentials = any(url.startswith("turn") for url in self.urls)
        static = self.username is not None or self.credential is not None
        if self.secret is not None and static:
            raise ValueError("a TURN server takes a shared secret or a username/credential")
        if static and (self.username is None or self.credential is None):
            raise ValueError("a TURN username needs its credential, and the other way round")
        if needs_credentials and not static and self.secret is None:
            raise ValueError(
                "turn: URLs need credentials (--turn-secret, or --turn-username and"
                " --turn-credential): browsers refuse TURN servers without them"
            )
        if not needs_credentials and (static or self.secret is not None):
            raise ValueError("TURN credentials were given without a turn: or turns: URL")

    def to_dict(self, identity: str, now: float) -> IceServerInfo:
        """What one joining client gets (an ``RTCIceServer``): its own credential if minted."""
        data: IceServerInfo = {"urls": list(self.urls)}
        username, credential = self.username, self.credential
        if self.secret is not None:
            username, credential = rest_credential(self.secret, identity, now + self.credential_ttl)
        if username is not None and credential is not None:
            data["username"] = username
            data["credential"] = credential
        return data


def rest_credential(secret: str, identity: str, expires: float) -> tuple[str, str]:
    """coturn's ``use-auth-secret`` credential for ``identity``, valid until ``expires``."""
    username = f"{int(expires)}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def check_url(url: str) -> None:
    """Refuse what RFC 7064/7065 and browsers refuse (a TLS scheme over UDP, no host)."""
    match = _URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"bad ICE server URL {url!r}: expected stun:HOST[:PORT], turn:HOST[:PORT]"
            "[?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp]"
        )
    if match["scheme"].startswith("stun") and match["transport"]:
        raise ValueError(f"bad ICE server URL {url!r}: stun: URLs take no transport")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise ValueError(f"bad ICE server URL {url!r}: turns: is TLS, over TCP")
    if match["port"] and not 0 < int(match["port"]) < 65536:
        raise ValueError(f"bad ICE server URL {url!r}: port out of range")


def ice_servers(
    urls: Sequence[str],
    *,
    username: str | None = None,
    credential: str | None = None,
    secret: str | None = None,
    credential_ttl: float = DEFAULT_CREDENTIAL_TTL,
) -> tuple[IceServer, ...]:
    """The command line's ``--ice-server`` URLs: the STUN ones, then the TURN ones with the
    credentials (in the order given: aiortc uses only the first TURN URL)."""
    for url in urls:
        check_url(url)
    stun = tuple(url for url in urls if url.startswith("stun"))
    turn = tuple(url for url in urls if url.startswith("turn"))
    servers = [IceServer(stun)] if stun else []
    if turn or username is not None or credential is not None or secret is not None:
        servers.append(IceServer(turn, username, credential, secret, credential_ttl))
    return tuple(servers)
