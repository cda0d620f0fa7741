"""Python client: join a room, publish any aiortc audio track, receive the slots.

Used by applications and bots, and by Podium's own tests and load generator::

    client = await PodiumClient.connect("ws://127.0.0.1:7880/rtc", token, publish=track)
    for slot in client.slots:  # slot.track is an aiortc MediaStreamTrack
        ...                    # slot.participant is who is in it right now
    async for event in client.events():
        ...
    await client.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
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

from sfu.red import RED_MIME
from sfu.rtc.setup import announce_addresses, opus_and_red, tune_client_process
from sfu.rtc.tracks import ParkedTrack, park_rtcp, send_red, tap_receiver
from sfu.rtp import AUDIO_LEVEL_URI
from signaling.wire.errors import PodiumError
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


class PodiumClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = session
        self.ws = ws
        self.pc: RTCPeerConnection | None = None
        self.join_info: dict[str, Any] = {}
        self.slots: list[Slot] = []
        self._layout: list[str | None] = []
        self.closed_reason: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._uplink_parked: ParkedTrack | None = None
        self._uplink_rtcp: asyncio.Future[None] | None = None
        self._reader = asyncio.create_task(self._read_loop())

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
    ) -> PodiumClient:
        """Join and (unless ``media=False``: a signaling-only client) negotiate media.

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
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, heartbeat=None, max_msg_size=0, ssl=ssl)
        except BaseException:
            await http.close()
            raise
        client = cls(http, ws)
        try:
            join: dict[str, Any] = {"token": token}
            if room is not None:
                join["room"] = room
            client.join_info = await client.request("join", timeout=timeout, **join)
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
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.join_info.get("ice_servers", [])
        ]
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        # The uplink m-line is always offered, so a later promotion needs no SDP.
        if publish is None:
            publish = self._uplink_parked = ParkedTrack()
            self._uplink_rtcp = asyncio.get_running_loop().create_future()
        transceiver = pc.addTransceiver(publish, direction="sendonly")
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
        self.slots[:] = [Slot(i, None if on_packet else r.track) for i, r in enumerate(receivers)]
        self._apply_layout()

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
        sender.replaceTrack(track)
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

    async def _read_loop(self) -> None:
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                self._dispatch(json.loads(message.data))
        finally:
            self.closed_reason = self.closed_reason or "connection closed"
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(self.closed_reason))
            self._events.put_nowait(None)

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
                    future.set_exception(PodiumError(error["code"], error["message"]))
        elif kind == "event":
            event = Event(message["event"], message.get("data", {}))
            if event.name == "slots":
                self._layout = list(event.data["slots"])
                self._apply_layout()
            elif event.name == "disconnected":
                self.closed_reason = event.data.get("reason")
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
        if self.pc is not None:
            await self.pc.close()
        await self.ws.close()
        await self._http.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


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
