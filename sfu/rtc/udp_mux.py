"""One UDP port for every peer connection (mediasoup's WebRtcServer, LiveKit's UDP mux).

aioice binds an OS-chosen port per connection: firewalls and containers then
need the whole ephemeral range open, and a fan-out is N ``sendto`` calls on N
sockets.  ``UdpMux`` binds one socket per announced address, all on one port,
and hands each server-side ICE connection a host candidate on it.

Demultiplexing: a datagram from a known remote address goes to the connection
that address belongs to.  A new address must open with a STUN binding request
whose USERNAME starts with a registered local ufrag (RFC 8445 7.2.2: every
check carries it) and whose MESSAGE-INTEGRITY holds for that connection's
password: a ufrag travels in clear text, so knowing one must not be enough to
steer a connection's traffic.  Anything else from an unknown address is
dropped and counted.  A connection's own checks also claim the addresses
they go to, so a check response is never lost to a race.  Closing a
connection releases its ufrag and addresses.

Nothing a datagram holds can raise out of ``datagram_received``: a datagram
that breaks a parser is dropped, counted (``malformed_datagrams``) and logged
at most once per ``LOG_INTERVAL``; datagrams waiting for a connection that is
not reading them (ICE or DTLS not up yet) are capped at ``MAX_QUEUED``.

The connection keeps using aioice's ``StunProtocol`` (STUN transactions,
data delivery); only its transport is a view onto the shared socket.

Consent freshness (RFC 7675) is kept as ICE-lite servers such as mediasoup
keep it: every client re-checks the pair every ~5 s, and a pair whose client
has sent no authenticated check for ``consent_timeout`` seconds is closed.
The server sends no consent checks of its own: with thousands of listeners
those were a STUN transaction per listener every 5 s each way.  Nor does it
keep a timer per connection: one sweep every ``consent_timeout / 6`` closes
the connections whose last check is too old.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

from sfu.rtc.sendmmsg import Address, SendBatch, available

logger = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # a burst of fan-out/ingress; capped by net.core.*mem_max
CONSENT_TIMEOUT = 30.0  # RFC 7675 section 5.1
MAX_QUEUED = 256  # datagrams waiting for one connection to read them
LOG_INTERVAL = 10.0  # seconds between two warnings about malformed datagrams


class UdpMux:
    """The shared UDP sockets of one server process."""

    def __init__(
        self, addresses: Sequence[str], port: int = 0, consent_timeout: float = CONSENT_TIMEOUT
    ) -> None:
        self.addresses = tuple(addresses)
        self.consent_timeout = consent_timeout
        self.port = port
        self.sockets: list[MuxSocket] = []
        self._connections: dict[str, aioice.ice.Connection] = {}
        # Connected ICE connections -> when their client's last check came, and the
        # future that tells each one its consent expired.
        self._consent: dict[aioice.ice.Connection, _Consent] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()
        self._logged_malformed = -LOG_INTERVAL
        self._malformed_at_log = 0

    async def start(self) -> None:
        """Bind every address on one port (the first bind picks it when ``port`` is 0).

        An announced address this machine does not have (a public address in
        front of a 1:1 NAT, a container's host) is served by a socket on the
        wildcard address, so ``docker run -p 7882:7882/udp`` works.
        """
        try:
            for address in self.addresses:
                self.sockets.append(await self._bind(address))
                self.port = self.sockets[-1].address[1]
        except OSError:
            self.close()
            raise
        hosts = ", ".join(s.announced for s in self.sockets)
        logger.info("ICE/media on UDP port %d (%s)", self.port, hosts)
        self._sweeper = asyncio.create_task(self._sweep_consent())

    async def _bind(self, address: str) -> MuxSocket:
        loop = asyncio.get_running_loop()
        try:
            _, sock = await loop.create_datagram_endpoint(
                lambda: MuxSocket(self, address), local_addr=(address, self.port)
            )
        except OSError as exc:
            if _errno(exc) != errno.EADDRNOTAVAIL:
                raise
            wildcard = "::" if ":" in address else "0.0.0.0"
            logger.info("%s is not a local address: serving it on %s", address, wildcard)
            _, sock = await loop.create_datagram_endpoint(
                lambda: MuxSocket(self, address), local_addr=(wildcard, self.port)
            )
        return sock

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    # -- connections -------------------------------------------------------
    def attach(self, connection: aioice.ice.Connection) -> None:
        """Gather ``connection``'s host candidates on the shared port instead of its own.

        Call before the answer is created: the ufrag that routes new addresses
        to the connection changes here (aioice draws 4 characters, too few to
        be unique among thousands of connections).
        """
        connection._local_username = ice_string(16)

        async def get_component_candidates(
            component: int, addresses: list[str], timeout: int = 5
        ) -> list[Candidate]:
            self._connections[connection.local_username] = connection
            candidates = []
            for sock in self.sockets:
                protocol = aioice.ice.StunProtocol(connection)
                protocol.connection_made(MuxTransport(sock, protocol))
                host, port = sock.announced, sock.address[1]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", host),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=host,
                    port=port,
                    type="host",
                )
                connection._protocols.append(protocol)  # closed with it
                candidates.append(protocol.local_candidate)
            return candidates

        # Instance attributes: only this (server-side) connection gathers on the mux.
        connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]
        self._keep_consent_from_checks(connection)

    def _keep_consent_from_checks(self, connection: aioice.ice.Connection) -> None:
        """Consent lasts while the client's authenticated checks keep coming (module doc)."""
        checked = connection.check_incoming  # aioice calls it once a check is authenticated
        watched = self._consent

        def check_incoming(
            message: stun.Message, addr: tuple[str, int], protocol: aioice.ice.StunProtocol
        ) -> None:
            consent = watched.get(connection)
            if consent is not None:
                consent.last_check = time.monotonic()
            checked(message, addr, protocol)

        async def query_consent() -> None:  # aioice starts it once ICE has completed
            consent = watched[connection] = _Consent(asyncio.get_running_loop().create_future())
            try:
                await consent.expired
            finally:
                if watched.get(connection) is consent:
                    del watched[connection]
            logger.info("ICE consent expired (no check for %.0f s)", self.consent_timeout)
            self.stats["consent_expired"] += 1
            connection._query_consent_task = None  # close() must not cancel this task
            await connection.close()

        connection.check_incoming = check_incoming  # type: ignore[method-assign]
        connection.query_consent = query_consent  # type: ignore[method-assign]

    async def _sweep_consent(self) -> None:
        while True:
            await asyncio.sleep(self.consent_timeout / 6)
            stale = time.monotonic() - self.consent_timeout
            for consent in self._consent.values():
                if consent.last_check < stale and not consent.expired.done():
                    consent.expired.set_result(None)

    def malformed(self, addr: Address) -> None:
        """Count a datagram that broke a parser; warn about them only now and then."""
        self.stats["malformed_datagrams"] += 1
        now = time.monotonic()
        if now - self._logged_malformed >= LOG_INTERVAL:
            total = self.stats["malformed_datagrams"]
            logger.warning(
                "malformed datagram from %s (%d since the last warning)",
                addr,
                total - self._malformed_at_log,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            self._logged_malformed, self._malformed_at_log = now, total

    def renew(self, connection: aioice.ice.Connection) -> None:
        """An ICE restart: new local credentials, and only they route new addresses."""
        self.detach(connection)
        new_credentials(connection)
        self._connections[connection.local_username] = connection

    def lookup(self, ufrag: str) -> aioice.ice.Connection | None:
        return self._connections.get(ufrag)

    def detach(self, connection: aioice.ice.Connection) -> None:
        if self._connections.get(connection.local_username) is connection:
            del self._connections[connection.local_username]

    @property
    def send_errors(self) -> int:
        """Datagrams the kernel refused in batched sends (they count as forwarded too)."""
        return sum(s.batch.errors for s in self.sockets if s.batch)

    def dump(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "addresses": [s.announced for s in self.sockets],
            "connections": len(self._connections),
            "remote_addresses": sum(len(s.routes) for s in self.sockets),
            "batched_datagrams": sum(s.batch.datagrams for s in self.sockets if s.batch),
            "sendmmsg_calls": sum(s.batch.syscalls for s in self.sockets if s.batch),
            "send_errors": self.send_errors,
            **self.stats,
        }


def _errno(exc: OSError) -> int | None:
    """The bind's errno: uvloop raises a plain OSError whose ``__cause__`` carries it."""
    cause = exc.__cause__
    if exc.errno is None and isinstance(cause, OSError):
        return cause.errno
    return exc.errno


class MuxSocket(asyncio.DatagramProtocol):
    """One bound socket: routes datagrams by remote address to ICE protocols."""

    def __init__(self, mux: UdpMux, announced: str) -> None:
        self.mux = mux
        self.announced = announced  # the host candidate's address (bound, or NAT's outside)
        self.routes: dict[Address, aioice.ice.StunProtocol] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("", 0)
        self.batch: SendBatch | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        datagrams = self.transport = cast(asyncio.DatagramTransport, transport)
        self.address = datagrams.get_extra_info("sockname")
        sock = datagrams.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # a restricted kernel keeps its default
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        if available():
            self.batch = SendBatch(sock.fileno(), datagrams.sendto)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        addr = (addr[0], addr[1])
        try:
            self._receive(data, addr)
        except Exception:  # aioice's parsers raise struct.error, IndexError, ... on garbage
            self.mux.malformed(addr)

    def _receive(self, data: bytes, addr: Address) -> None:
        protocol = self.routes.get(addr)
        if protocol is None:
            protocol = self._claim(data, addr)
            if protocol is None:
                self.mux.stats["unknown_datagrams"] += 1
                return
        first = data[0] if data else -1
        if first > 191 or 63 < first < 128 or 3 < first < 20 or first < 0:
            # Nothing any protocol on this port (RFC 7983) starts with; aiortc's DTLS
            # transport dies on an empty datagram.
            self.mux.malformed(addr)
            return
        # DTLS, SRTP, SRTCP: skip aioice's attempt to parse them as STUN.
        if first > 3:
            connection = protocol.receiver
            if connection._queue.qsize() >= MAX_QUEUED:  # nobody reading: ICE/DTLS not up
                self.mux.stats["queue_full"] += 1
                return
            connection.data_received(data, protocol.local_candidate.component)
        else:
            protocol.datagram_received(data, addr)

    def _claim(self, data: bytes, addr: Address) -> aioice.ice.StunProtocol | None:
        """A new remote address: it must open with an authenticated check for one of ours."""
        if len(data) < 20 or data[0] > 1:  # not STUN (RFC 7983)
            return None
        try:
            message = stun.parse_message(data)
        except ValueError:
            return None
        if message.message_class != stun.Class.REQUEST:
            return None
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return None
        connection = self.mux.lookup(username.partition(":")[0])
        if connection is None:
            return None
        if not message.check_message_integrity(connection.local_password.encode()):
            self.mux.stats["unauthenticated_checks"] += 1
            return None
        for protocol in connection._protocols:
            transport = getattr(protocol, "transport", None)
            if isinstance(transport, MuxTransport) and transport.socket is self:
                self.route(addr, protocol)
                return protocol
        return None

    def route(self, addr: Address, protocol: aioice.ice.StunProtocol) -> None:
        if addr not in self.routes:
            self.routes[addr] = protocol
            if isinstance(protocol.transport, MuxTransport):
                protocol.transport.remotes.add(addr)

    def release(self, transport: MuxTransport) -> None:
        for addr in transport.remotes:
            if self.routes.get(addr) is transport.protocol:
                del self.routes[addr]
                if self.batch is not None:
                    self.batch.forget(addr)
        transport.remotes.clear()

    def error_received(self, exc: Exception) -> None:
        self.mux.stats["socket_errors"] += 1

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()  # before the fd it writes to is gone
        if self.transport is not None:
            self.transport.close()


class _Consent:
    """One connected ICE connection's consent: its client's last check, and its expiry."""

    __slots__ = ("expired", "last_check")

    def __init__(self, expired: asyncio.Future[None]) -> None:
        self.expired = expired
        self.last_check = time.monotonic()  # ICE has just completed: a check just came


def ice_string(length: int) -> str:
    """``length`` random ICE characters (letters, digits, ``+``, ``/``: RFC 8839) from one
    system-random draw; aioice's ``random_string`` makes a system call per character."""
    return base64.b64encode(os.urandom(length * 3 // 4 + 1)).decode()[:length]


def new_credentials(connection: aioice.ice.Connection) -> None:
    """Fresh local ICE credentials (an ICE restart): a ufrag unique among thousands."""
    connection._local_username = ice_string(16)
    connection._local_password = ice_string(22)


class MuxTransport(asyncio.DatagramTransport):
    """What one ICE connection's ``StunProtocol`` sees of the shared socket."""

    def __init__(self, sock: MuxSocket, protocol: aioice.ice.StunProtocol) -> None:
        super().__init__()
        self.socket = sock
        self.protocol = protocol
        self.remotes: set[Address] = set()
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing or self.socket.transport is None:
            return
        addr = (addr[0], addr[1])
        if addr not in self.remotes:
            self.socket.route(addr, self.protocol)  # our own check: its answer is ours
        self.socket.transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self.socket.address
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.socket.release(self)
        self.socket.mux.detach(self.protocol.receiver)
        asyncio.get_running_loop().call_soon(self._lost)

    def _lost(self) -> None:
        """Tell the protocol, then let go of it: the two refer to each other."""
        self.protocol.connection_lost(None)
        del self.protocol

    def abort(self) -> None:
        self.close()
