"""Python client: join a room, publish any aiortc audio track, receive the slots.

Used by applications and bots, and by Podium's own tests and load generator::

    client = await PodiumClient.connect("ws://127.0.0.1:7880/rtc", token, publish=track)
    for slot in client.slots:  # slot.track is an aiortc MediaStreamTrack
        ...                    # slot.participant is who is in it right now
    async for event in client.events():
        ...
    await client.close()

The client watches its own links: WebSocket pings (``heartbeat``, 5 s) and the peer
connection's state.  When either dies it reconnects by itself, with backoff,
and resumes its seat with the token the server handed out at join (see
signaling/resume.py); a media path that is gone is negotiated afresh on a new
peer connection (aiortc has no ICE restart).  The app sees ``reconnecting``,
``reconnected`` and, when it is over for good, ``disconnected {reason}``
events; a slot's ``track`` may be a new object after a reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket
from av.frame import Frame
from av.packet import Packet

from sfu.red import RED_MIME
from sfu.rtc.setup import announce_addresses, opus_and_red, tune_client_process
from sfu.rtc.tracks import ParkedTrack, park_rtcp, send_red, tap_receiver
from sfu.rtp import AUDIO_LEVEL_URI
from signaling.wire.errors import ErrorCode, PodiumError
from signaling.wire.messages import PROTOCOL_VERSION

PacketHandler = Callable[[int, RtpPacket], None]
SLOT_HISTORY = 64


class IncompatibleServer(ConnectionError):
    """The server's join response names a protocol version this client does not speak."""


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


@dataclass(eq=False)
class Slot:
    """One receive slot: a fixed track whose speaker changes without renegotiation."""

    index: int
    track: MediaStreamTrack | None
    participant: str | None = None
    history: deque[str | None] = field(default_factory=lambda: deque(maxlen=SLOT_HISTORY))
    """The slot's latest speakers, oldest first (bounded: a long session must not grow it)."""


HEARTBEAT = 5.0  # WebSocket ping period; no pong within half of it: the link is dead
RECONNECT_BACKOFF = (0.25, 1.0)  # first and longest wait between reconnection attempts
CONNECT_TIMEOUT = 3.0  # one attempt to open the WebSocket and resume
RESUMING = 4000  # close code of a socket given up for dead: not a leave (1000 is one)
MAX_REDIRECTS = 4  # cluster nodes a join may be sent through before giving up


class PodiumClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        url: str = "",
        heartbeat: float | None = HEARTBEAT,
        ssl: SSLContext | bool = True,
    ) -> None:
        self._http = session
        self.ws = ws
        self.url = url
        self.heartbeat = heartbeat
        self._ssl = ssl
        self.pc: RTCPeerConnection | None = None
        self.join_info: dict[str, Any] = {}
        self.slots: list[Slot] = []
        self._layout: list[str | None] = []
        self.closed_reason: str | None = None
        self.state = "connected"  # reconnecting, disconnected
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._uplink_parked: ParkedTrack | None = None
        self._uplink_rtcp: asyncio.Future[None] | None = None
        self._media: tuple[PacketHandler | None, bool, bool] | None = None  # to renegotiate
        self._source: MediaStreamTrack | None = None  # the app's uplink track, if any
        self._closing = False
        self._recovery: asyncio.Task[None] | None = None
        self._mover: asyncio.Task[bool] | None = None  # closing a socket to resume elsewhere
        self._reader = asyncio.create_task(self._read_loop(ws))

    # -- connecting ------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        publish: MediaStreamTrack | None = None,
        on_packet: PacketHandler | None = None,
        host_addresses: Sequence[str] | None = None,
        room: str | None = None,
        media: bool = True,
        audio_level: bool = True,
        red: bool = False,
        timeout: float = 10.0,
        tune_process: bool = False,
        ssl: SSLContext | bool = True,
        heartbeat: float | None = HEARTBEAT,
    ) -> PodiumClient:
        """Join and (unless ``media=False``: a signaling-only client) negotiate media.

        ``heartbeat`` is the WebSocket ping period that detects a dead link (None: never
        ping, and never reconnect on one's own).

        ``on_packet(slot, packet)`` receives the slots' RTP packets undecoded
        (load generators); without it each slot exposes a decoded ``track``.
        ``host_addresses`` sets the ICE addresses to gather, e.g. ``["127.0.0.1"]``
        for loopback: process-wide, as aioice has no per-connection option.
        ``audio_level=False`` offers no RFC 6464 extension, as some clients do (the
        server then measures levels by decoding). Nothing else about aiortc changes
        for the host application unless ``tune_process=True`` asks for
        ``sfu.rtc.setup.tune_client_process`` (bot farms, load generators).
        ``ssl``: for ``wss://``, the context that trusts the server's certificate
        (e.g. ``ssl.create_default_context(cafile=...)`` for a dev one).
        ``red=True`` offers RED (RFC 2198) as Chrome does: the uplink sends each frame
        with the previous one, and slots taken undecoded (``on_packet``) receive RED
        payloads; decoded slot tracks stay plain Opus. aiortc has no per-connection codec
        table, so ``red=True`` adds RED to the process's.
        """
        if tune_process:
            tune_client_process()
        elif red:
            opus_and_red()
        if host_addresses is not None:
            announce_addresses(host_addresses)
        join: dict[str, Any] = {"token": token}
        if room is not None:
            join["room"] = room
        for _ in range(MAX_REDIRECTS):
            http = aiohttp.ClientSession()
            try:
                ws = await http.ws_connect(url, heartbeat=heartbeat, max_msg_size=0, ssl=ssl)
            except BaseException:
                await http.close()
                raise
            client = cls(http, ws, url, heartbeat, ssl)
            try:
                client.join_info = await client.request("join", timeout=timeout, **join)
                break
            except PodiumError as refused:
                await client.close()
                if refused.code != ErrorCode.REDIRECT or refused.url is None:
                    raise
                url = refused.url  # a cluster node that is full names one that is not
            except BaseException:
                await client.close()
                raise
        else:
            raise ConnectionError(f"redirected more than {MAX_REDIRECTS} times")
        try:
            protocol = client.join_info.get("protocol")
            if protocol != PROTOCOL_VERSION:
                raise IncompatibleServer(
                    f"the server speaks protocol {protocol}, this client {PROTOCOL_VERSION}"
                )
            if media:
                await client._negotiate(publish, on_packet, audio_level, red, timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def _negotiate(
        self,
        publish: MediaStreamTrack | None,
        on_packet: PacketHandler | None,
        audio_level: bool,
        red: bool,
        timeout: float,
    ) -> None:
        """A peer connection with the uplink and K slots, offered and answered."""
        self._media = (on_packet, audio_level, red)
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.join_info.get("ice_servers", [])
        ]
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._uplink_rtcp = None
        # The uplink m-line is always offered, so a later promotion needs no SDP.
        self._source = publish
        uplink: MediaStreamTrack
        if publish is None:
            uplink = self._uplink_parked = ParkedTrack()
            self._uplink_rtcp = asyncio.get_running_loop().create_future()
        else:
            uplink = _Feed(publish)
        transceiver = pc.addTransceiver(uplink, direction="sendonly")
        _offer_codecs(transceiver, red)
        if red:
            send_red(transceiver)
        if self._uplink_rtcp is not None:  # no reports about nothing sent
            park_rtcp(transceiver.sender, resume=self._uplink_rtcp)
        receivers = []
        for index in range(int(self.join_info["slots"])):
            slot = pc.addTransceiver("audio", direction="recvonly")
            _offer_codecs(slot, red and on_packet is not None)
            receiver = slot.receiver
            if on_packet is not None:
                tap_receiver(receiver, _slot_handler(on_packet, index))
            receivers.append(receiver)
        offer = await pc.createOffer()
        if not audio_level:
            lines = offer.sdp.split("\r\n")
            offer.sdp = "\r\n".join(line for line in lines if AUDIO_LEVEL_URI not in line)
        await pc.setLocalDescription(offer)
        answer = await self.request("offer", timeout=timeout, sdp=pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        # aiortc creates the receive tracks when it applies the answer.
        tracks = [None if on_packet else r.track for r in receivers]
        if len(self.slots) == len(tracks):  # a new peer connection: same slots, new tracks
            for existing, track in zip(self.slots, tracks, strict=True):
                existing.track = track
        else:
            self.slots[:] = [Slot(i, track) for i, track in enumerate(tracks)]
        self._apply_layout()

        @pc.on("connectionstatechange")
        def watch() -> None:
            if pc is self.pc and pc.connectionState == "failed":
                self._recover(media_only=True)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        assert self.pc is not None
        async with asyncio.timeout(timeout):
            while self.pc.connectionState != "connected":
                if self.pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"peer connection {self.pc.connectionState}")
                await asyncio.sleep(0.02)

    async def publish(self, track: MediaStreamTrack) -> None:
        """Start sending ``track`` on the uplink (no renegotiation)."""
        assert self.pc is not None
        sender = self.pc.getTransceivers()[0].sender
        parked, self._uplink_parked = self._uplink_parked, None
        self._source = track
        sender.replaceTrack(_Feed(track))
        if parked is not None:
            parked.release()
        if self._uplink_rtcp is not None and not self._uplink_rtcp.done():
            self._uplink_rtcp.set_result(None)

    # -- requests and events ---------------------------------------------
    async def request(self, kind: str, timeout: float = 10.0, **data: Any) -> dict[str, Any]:
        """Send a request; return its response data or raise PodiumError."""
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.ws.send_str(json.dumps({"id": request_id, "type": kind, "data": data}))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def events(self) -> AsyncIterator[Event]:
        """Server events in order, until the connection closes."""
        while (event := await self._events.get()) is not None:
            yield event

    async def next_event(
        self,
        name: str,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Event:
        """Skip ahead to the next event called ``name`` (whose data satisfies ``where``)."""
        async with asyncio.timeout(timeout):
            async for event in self.events():
                if event.name == name and (where is None or where(event.data)):
                    return event
        raise ConnectionError(f"closed ({self.closed_reason}) before a {name!r} event")

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT and ws is self.ws:
                    self._dispatch(json.loads(message.data))
        finally:
            if ws is self.ws:
                self._link_lost()

    def _link_lost(self) -> None:
        """The WebSocket closed: resume if it died under us, finish if it was ended."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(self.closed_reason or "connection lost"))
        resumable = self.heartbeat is not None and "resume_token" in self.join_info
        if self._closing or self.closed_reason is not None or not resumable:
            self._finish(self.closed_reason or "connection closed")
        else:
            self._recover(media_only=False)

    def _finish(self, reason: str) -> None:
        if self.state == "disconnected":
            return
        self.state, self.closed_reason = "disconnected", reason
        self._events.put_nowait(None)

    # -- recovering from a dead link ---------------------------------------
    def _recover(self, media_only: bool) -> None:
        """Start reconnecting (or only renegotiating media) unless that is under way.

        A lost WebSocket supersedes a media renegotiation in progress: the
        reconnection renegotiates too, once the seat is back.
        """
        if self._closing or self.state == "disconnected":
            return
        running = self._recovery is not None and not self._recovery.done()
        if running and (media_only or self.state == "reconnecting"):
            return
        if running and self._recovery is not None:
            self._recovery.cancel()
        task = self._renegotiate_media() if media_only else self._reconnect()
        self._recovery = asyncio.create_task(task)

    async def _renegotiate_media(self) -> None:
        """The peer connection died but the WebSocket lives: offer a new one."""
        # A failure here means the socket died too; its loss starts a reconnection.
        with contextlib.suppress(ConnectionError, PodiumError, TimeoutError):
            await self._new_peer_connection()

    async def _new_peer_connection(self) -> None:
        assert self._media is not None and self.pc is not None
        old = self.pc
        self._uplink_parked = None
        await old.close()
        on_packet, audio_level, red = self._media
        await self._negotiate(self._source, on_packet, audio_level, red, CONNECT_TIMEOUT * 2)

    def _move(self, url: str) -> None:
        """The node is draining and names another: resume there now (the seat is kept)."""
        self.url = url
        if self.state == "connected":  # kept: a task nobody holds may be collected midway
            self._mover = asyncio.get_running_loop().create_task(self.ws.close(code=RESUMING))

    async def _reconnect(self) -> None:
        """Reopen the WebSocket with backoff and resume the seat within the server's window.

        In a cluster the join response names the other nodes: when this one does not
        answer, the next is tried (any node serves any room, ``docs/cluster.md``).
        """
        self.state = "reconnecting"
        self._events.put_nowait(Event("reconnecting", {}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.join_info.get("resume_window", 0))
        delay, reason = RECONNECT_BACKOFF[0], "resume_timeout"
        urls = [self.url, *(u for u in self.join_info.get("reconnect_urls", []) if u != self.url)]
        attempt = 0
        while loop.time() < deadline and not self._closing:
            url = urls[attempt % len(urls)]
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    ws = await self._http.ws_connect(
                        url, heartbeat=self.heartbeat, max_msg_size=0, ssl=self._ssl
                    )
                self.ws = ws
                self._reader = asyncio.create_task(self._read_loop(ws))
                resumed = await self.request(
                    "resume", timeout=CONNECT_TIMEOUT, token=self.join_info["resume_token"]
                )
            except PodiumError as refused:  # the seat is gone
                reason = refused.code
                break
            except (aiohttp.ClientError, OSError, ConnectionError, TimeoutError):
                with contextlib.suppress(Exception):
                    await self.ws.close(code=RESUMING)
                attempt += 1
                if attempt % len(urls) == 0:  # every node tried: wait before the next round
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # no herd
                    delay = min(delay * 2, RECONNECT_BACKOFF[1])
                continue
            self.url = url
            self.join_info.update(resumed)
            self.state = "connected"
            if self.pc is not None and (
                not resumed.get("media", True) or self.pc.connectionState in ("failed", "closed")
            ):
                with contextlib.suppress(ConnectionError, PodiumError, TimeoutError):
                    await self._new_peer_connection()
            self._events.put_nowait(Event("reconnected", {}))
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code=RESUMING)
        if self.closed_reason is None:  # else the server said why (removed...) before refusing
            self._events.put_nowait(Event("disconnected", {"reason": reason}))
        self._finish(self.closed_reason or reason)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("response", "error"):
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if kind == "error" and future is None:
                error = message["error"]
                self._events.put_nowait(Event("error", error))
            elif future is not None and not future.done():
                if kind == "response":
                    future.set_result(message.get("data", {}))
                else:
                    error = message["error"]
                    refused = PodiumError(error["code"], error["message"], error.get("url"))
                    future.set_exception(refused)
        elif kind == "event":
            event = Event(message["event"], message.get("data", {}))
            if event.name == "slots":
                self._layout = list(event.data["slots"])
                self._apply_layout()
            elif event.name == "disconnected":
                self.closed_reason = event.data.get("reason")
            elif event.name == "media_lost":
                self._recover(media_only=True)
            elif event.name == "draining" and event.data.get("url"):
                self._move(str(event.data["url"]))
            self._events.put_nowait(event)

    def _apply_layout(self) -> None:
        for slot, participant in zip(self.slots, self._layout, strict=False):
            if slot.participant != participant:
                slot.participant = participant
                slot.history.append(participant)

    # -- closing ---------------------------------------------------------
    async def leave(self) -> None:
        with contextlib.suppress(ConnectionError, PodiumError, asyncio.TimeoutError):
            await self.request("leave", timeout=5.0)
        await self.close()

    async def close(self) -> None:
        self._closing = True
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self.pc is not None:
            await self.pc.close()
        await self.ws.close()
        await self._http.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._finish(self.closed_reason or "closed")


class _Feed(MediaStreamTrack):
    """The app's track as one peer connection sees it.

    aiortc stops a sender's track when its peer connection closes; the app's own
    track must outlive a renegotiation onto a new peer connection.
    """

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source

    async def recv(self) -> Frame | Packet[Any]:
        return await self.source.recv()


def _offer_codecs(transceiver: RTCRtpTransceiver, red: bool) -> None:
    """Offer Opus, preceded by RED when wanted (the server answers RED wherever offered)."""
    codecs = RTCRtpSender.getCapabilities("audio").codecs
    wanted = [c for c in codecs if red and c.mimeType.lower() == RED_MIME]
    transceiver.setCodecPreferences(
        wanted + [c for c in codecs if c.mimeType.lower() == "audio/opus"]
    )


def _slot_handler(on_packet: PacketHandler, index: int) -> Callable[[RtpPacket], Awaitable[None]]:
    async def handle(packet: RtpPacket) -> None:
        on_packet(index, packet)

    return handle
