"""Headless Chromium ⇄ Podium, run inside a private network namespace.

``tests/test_browser.py`` starts this as ``unshare --net python -m tests.browser.driver
OUT RESULTS``: in that namespace only ``lo`` exists, so Chromium's start-up lookups go
nowhere, ICE can only pair 127.0.0.1 with 127.0.0.1, and nothing leaves the machine.
Here it brings ``lo`` up, starts a PodiumServer with the demo page, Python clients
and Chromium (Playwright, the system's ``/usr/bin/chromium``, a fake microphone playing
a generated tone), runs the scenarios and writes what it measured as JSON to RESULTS;
the test functions make the assertions. Screenshots go to OUT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import time
import traceback
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.async_api import Browser, Page, WebSocketRoute, async_playwright
from redis.asyncio import Redis

from benchmarks.impairment_relay import Impairment, ImpairmentRelay
from sfu.config import MediaConfig
from signaling.client.client import PodiumClient
from signaling.room.attendees import AttendeeConfig
from signaling.room.settings import RoomSettings
from signaling.server.server import PodiumServer
from signaling.server.tls import dev_certificate
from signaling.server.turn import IceServer
from tests.cluster.nodes import Node, RedisServer, launch_node, stop_nodes
from tests.conftest import LOOPBACK, eventually, make_config, token
from tests.media import ToneTrack, dominant_frequency, record, tone_level_db
from tests.netcut import Link
from tests.rooms import media_of

CHROMIUM = "/usr/bin/chromium"
BROWSER_TONE = 1000.0  # Hz, the fake microphone's WAV
PYTHON_TONE = 440.0  # Hz, the Python speaker's track
SCENARIO_TIMEOUT = 30.0
CUTS = (3.0, 10.0, 25.0)  # seconds the browser listener's path is cut, in turn
ICE_CUT = 10.0  # seconds the browser listener's media path alone is cut
STEP_TIMEOUT_MS = 10_000
SETTLE = 12_000  # samples (0.25 s) dropped from recordings: jitter buffer, decoder start

HERE = Path(__file__).resolve().parent


def page_function(name: str) -> str:
    """A function expression from ``tests/browser/NAME`` (leading comments dropped)."""
    lines = (HERE / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("//"))


PAGE_AUDIO_JS = page_function("page_audio.js")
PAGE_RTC_JS = page_function("page_rtc.js")

# The SDK drops mDNS host candidates (the server cannot resolve them) from its offer.
MDNS_JS = """
async () => {
  const { withoutMdnsCandidates } = await import("/static/podium.js");
  const sdp = ["v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "a=candidate:1 1 udp 2122260223 0b1d2c3e-aaaa-bbbb-cccc-0123456789ab.local 54321 typ host",
    "a=candidate:2 1 udp 2122260223 192.0.2.7 54321 typ host", "a=rtcp-mux", ""].join("\\r\\n");
  return withoutMdnsCandidates(sdp);
}
"""

# The SDK's request/event plumbing, from the page: nextEvent, events(), PodiumError.
SDK_JS = """
async () => {
  const client = window.podiumDemo.client;
  const chat = client.nextEvent("chat", { where: (d) => d.sender === client.identity });
  const stream = client.events();
  const sent = await client.sendChat("sent through the SDK");
  const seen = (await chat).data;
  let first = await stream.next();
  while (first.value.name !== "chat") first = await stream.next();
  await stream.return();
  let refused = null;
  try { await client.acceptInvite(); } catch (error) { refused = [error.name, error.code]; }
  const levels = Object.fromEntries(await client.levels());
  return { sent: sent.message.text, seen: seen.text, streamed: first.value.data.text, refused,
           pong: typeof (await client.ping()).time, levels };
}
"""


# The slot carrying `identity`, as Chrome's receiver counts it: loss, concealment, codec.
LOSS_STATS_JS = """
async ({ identity }) => {
  const slot = window.podiumDemo.client.slotOf(identity);
  if (!slot) return { error: `no slot carries ${identity}` };
  const all = await slot.receiver.getStats();
  const byId = new Map([...all.values()].map((r) => [r.id, r]));
  for (const r of all.values()) {
    if (r.type === "inbound-rtp") {
      return { packetsReceived: r.packetsReceived, packetsLost: r.packetsLost,
               concealedSamples: r.concealedSamples, totalSamplesReceived: r.totalSamplesReceived,
               fecPacketsReceived: r.fecPacketsReceived ?? null,
               mimeType: byId.get(r.codecId)?.mimeType ?? null };
    }
  }
  return { error: "no inbound-rtp" };
}
"""

# Media through the relay: the server's candidates in every answer point at it (Chrome's
# own are mDNS names the SDK drops, so the server learns the relay's address from checks).
RELAY_JS = """
(() => {
  const original = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (description) {
    if (description && description.sdp) {
      const sdp = description.sdp.replace(
        /(a=candidate:\\S+ \\d+ udp \\d+ )\\S+ \\d+( typ host)/g,
        (_, head, tail) => `${head}127.0.0.1 RELAY_PORT${tail}`);
      description = { type: description.type, sdp };
    }
    return original.call(this, description);
  };
})();
"""

# Seconds from now until `identity`'s slot has received 10 more RTP packets (null: never).
AUDIO_BACK_JS = """
async ({ identity, timeout }) => {
  const client = window.podiumDemo.client;
  const started = performance.now();
  const received = async () => {
    const slot = client.slotOf(identity);
    if (!slot) return null;
    for (const report of (await slot.receiver.getStats()).values()) {
      if (report.type === "inbound-rtp") return [slot.receiver, report.packetsReceived];
    }
    return [slot.receiver, 0];
  };
  let base = await received();
  while (performance.now() - started < timeout) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = await received();
    if (now && base && now[0] === base[0] && now[1] - base[1] >= 10) {
      return (performance.now() - started) / 1000;
    }
    if (!base || !now || now[0] !== base[0]) base = now;  // a new peer connection
  }
  return null;
}
"""


# What the speaker's sender last heard from the server's receiver reports.
REMOTE_INBOUND_JS = """
async () => {
  for (const r of (await window.podiumDemo.client.pc.getStats()).values()) {
    if (r.type === "remote-inbound-rtp") return { fractionLost: r.fractionLost };
  }
  return { fractionLost: null };
}
"""


def relay_signaling(relay: ImpairmentRelay) -> Callable[[WebSocketRoute], Awaitable[None]]:
    """Route a page's WebSocket so that its offer and the server's answer point at ``relay``."""

    async def route(page_ws: WebSocketRoute) -> None:
        server_ws = page_ws.connect_to_server()
        offers: set[int] = set()

        def from_page(message: str | bytes) -> None:
            data = json.loads(message)
            if data.get("type") == "offer":
                offers.add(data["id"])
                data["data"]["sdp"] = relay.relayed_offer(data["data"]["sdp"])
            server_ws.send(json.dumps(data))

        def from_server(message: str | bytes) -> None:
            data = json.loads(message)
            if data.get("type") == "response" and data.get("id") in offers:
                data["data"]["sdp"] = relay.relayed_answer(data["data"]["sdp"])
            page_ws.send(json.dumps(data))

        page_ws.on_message(from_page)
        server_ws.on_message(from_server)

    return route


def bring_up_loopback() -> None:
    """``ip link set lo up`` without iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def interfaces() -> list[str]:
    with open("/proc/net/dev") as f:
        return [line.split(":")[0].strip() for line in f.readlines()[2:]]


def write_tone(path: Path, frequency: float, seconds: float = 2.0, amplitude: float = 0.35) -> None:
    """48 kHz mono s16: a whole number of cycles, so Chromium's looping is seamless."""
    rate = 48_000
    t = np.arange(int(rate * seconds)) / rate
    samples = (amplitude * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


@dataclass
class Env:
    server: PodiumServer
    browser: Browser
    out: Path
    clients: list[PodiumClient]
    tls: tuple[Path, Path]
    """A test certificate for 127.0.0.1 and its key; Chromium trusts it (``--ignore-
    certificate-errors-spki-list`` names exactly its public key)."""

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def client(self, identity: str, role: str, room: str, **kw: Any) -> PodiumClient:
        client = await PodiumClient.connect(
            self.server.url, token(identity, role, room=room), host_addresses=LOOPBACK, **kw
        )
        self.clients.append(client)
        await client.wait_connected()
        return client

    async def page(
        self,
        room: str,
        identity: str,
        role: str,
        width: int = 1180,
        height: int = 820,
        base: str | None = None,
        relay: ImpairmentRelay | None = None,
        query: str = "",
        link: Link | None = None,
    ) -> Page:
        """The demo page (of ``base``, default this server), joined (through the form and
        /dev/token), audio connected (through ``relay`` when given).

        With ``link``, everything the page sends goes through it (HTTP, WebSocket, media).
        """
        context = await self.browser.new_context(
            viewport={"width": width, "height": height}, permissions=["microphone"]
        )
        if link is not None:
            await context.add_init_script(RELAY_JS.replace("RELAY_PORT", str(link.outer_port)))
        page = await context.new_page()
        if relay is not None:
            await page.route_web_socket(re.compile(r"/rtc$"), relay_signaling(relay))
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.on("console", lambda m: print(f"[{identity} console] {m.type}: {m.text}"))
        page.on("pageerror", lambda e: print(f"[{identity} pageerror] {e}"))
        if link is not None:
            base = f"http://127.0.0.1:{link.tcp_port}"
        await page.goto(f"{base or self.http}/?processing=0{query}")
        await page.get_by_label("Room", exact=True).fill(room)
        await page.get_by_label("Your name", exact=True).fill(identity)
        await page.get_by_label(role.capitalize(), exact=True).check()
        await page.get_by_role("button", name="Join room").click()
        await page.wait_for_function(
            "window.podiumDemo?.client?.pc?.connectionState === 'connected'"
        )
        return page

    async def shot(self, page: Page, name: str, shots: list[str]) -> None:
        path = self.out / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        shots.append(str(path))


def slot_of(client: PodiumClient, identity: str) -> int | None:
    return next((s.index for s in client.slots if s.participant == identity), None)


async def listen(client: PodiumClient, identity: str, seconds: float = 1.2) -> dict[str, Any]:
    """What ``client`` hears from ``identity``: dominant frequency and tone level (FFT)."""
    await eventually(lambda: slot_of(client, identity) is not None)
    index = slot_of(client, identity)
    assert index is not None
    track = client.slots[index].track
    assert track is not None
    samples = (await record(track, seconds))[SETTLE:]
    return {
        "slot": index,
        "samples": len(samples),
        "frequency": dominant_frequency(samples),
        "tone_db": tone_level_db(samples, BROWSER_TONE),
    }


async def producer_facts(server: PodiumServer, room: str, identity: str) -> dict[str, Any]:
    producer = media_of(server.rooms[room]).room.participants[identity].producer
    return {
        "audio_level": producer.audio_level,
        "level_age": None
        if producer.level_time is None
        else time.monotonic() - producer.level_time,
        "packets": producer.packets,
    }


async def packet_rate(server: PodiumServer, room: str, identity: str, seconds: float) -> float:
    producer = media_of(server.rooms[room]).room.participants[identity].producer
    before = producer.packets
    await asyncio.sleep(seconds)
    return (producer.packets - before) / seconds


# -- scenarios ---------------------------------------------------------------------


async def speaker_interop(env: Env) -> dict[str, Any]:
    """A browser speaker heard by a Python listener; what Chrome negotiated and sent."""
    room, shots = "interop", list[str]()
    listener = await env.client("py-listener", "listener", room)
    page = await env.page(room, "chrome-speaker", "speaker")
    heard = await listen(listener, "chrome-speaker")
    rtc = await page.evaluate(PAGE_RTC_JS)
    rtc["mdns_filtered"] = await page.evaluate(MDNS_JS)
    server_side = await producer_facts(env.server, room, "chrome-speaker")
    await page.wait_for_selector("#speakers [data-identity='chrome-speaker'].speaking")
    await env.shot(page, "interop-01-browser-speaker", shots)
    talking = await packet_rate(env.server, room, "chrome-speaker", 1.0)
    await page.get_by_role("button", name="Mute", exact=True).click()
    await page.get_by_role("button", name="Unmute", exact=True).wait_for()
    await asyncio.sleep(0.3)  # let the encoder notice the silence
    silent = await packet_rate(env.server, room, "chrome-speaker", 1.5)
    await env.shot(page, "interop-02-browser-speaker-muted", shots)
    await page.context.close()
    return {
        "heard": heard,
        "rtc": rtc,
        "server": server_side,
        "packet_rate": {"talking": talking, "muted": silent},
        "screenshots": shots,
    }


async def browser_listener(env: Env) -> dict[str, Any]:
    """A Python speaker's tone measured in the page (AnalyserNode); indicators and counts."""
    room, shots = "listen", list[str]()
    await env.client("py-speaker", "speaker", room, publish=ToneTrack(PYTHON_TONE, 0.5))
    page = await env.page(room, "chrome-listener", "listener")
    await page.wait_for_function("window.podiumDemo.client.slotOf('py-speaker') !== undefined")
    audio = await page.evaluate(PAGE_AUDIO_JS, {"identity": "py-speaker", "ms": 1500})
    await page.wait_for_selector("#speakers [data-identity='py-speaker'].speaking")
    await page.wait_for_function(
        "document.getElementById('audience-count').textContent.startsWith('1 listening')"
    )
    header = await page.locator("#audience-count").text_content()
    sdk = await page.evaluate(SDK_JS)
    await env.shot(page, "listen-01-browser-listener", shots)
    phone = await env.page(room, "chrome-phone", "listener", width=390, height=844)
    await phone.wait_for_selector("#speakers [data-identity='py-speaker'].speaking")
    await phone.wait_for_function(
        "document.getElementById('audience-count').textContent.startsWith('2 listening')"
    )
    await env.shot(phone, "listen-02-phone-listener", shots)
    await phone.context.close()
    await page.context.close()
    return {"audio": audio, "audience_header": header, "sdk": sdk, "screenshots": shots}


async def stage_flow(env: Env) -> dict[str, Any]:
    """In the page: raise hand → host page invites → accept → unmute → heard; chat; mute."""
    room, shots, steps = "stage", list[str](), list[str]()

    def step(name: str) -> None:
        steps.append(name)

    listener = await env.client("py-listener", "listener", room)
    host = await env.page(room, "host", "host")
    guest = await env.page(room, "guest", "listener")
    await env.shot(guest, "stage-01-guest-joined", shots)

    await guest.get_by_role("button", name="Raise hand").click()
    await guest.locator("#hand[aria-pressed='true']").wait_for()
    step("raised")
    await env.shot(guest, "stage-02-guest-hand-raised", shots)

    await host.locator("#hands [data-identity='guest']").wait_for()
    await env.shot(host, "stage-03-host-sees-hand", shots)
    await host.get_by_role("button", name="Invite guest to speak").first.click()
    await host.locator("#hands [data-identity='guest'] .pill", has_text="Invited").wait_for()
    step("invited")

    await guest.get_by_role("alertdialog").wait_for()
    await env.shot(guest, "stage-04-guest-invited", shots)
    await guest.get_by_role("button", name="Join the stage").click()
    await guest.get_by_role("button", name="Unmute", exact=True).wait_for()
    await host.locator("#speakers [data-identity='guest'][data-muted='true']").wait_for()
    step("accepted")
    await env.shot(guest, "stage-05-guest-on-stage-muted", shots)

    await guest.get_by_role("button", name="Unmute", exact=True).click()
    await guest.get_by_role("button", name="Mute", exact=True).wait_for()
    step("unmuted")
    heard = await listen(listener, "guest")
    await host.locator("#speakers [data-identity='guest'].speaking").wait_for()
    await host.locator("#speakers [data-identity='host'].speaking").wait_for()  # own mic
    step("speaking-indicator")
    await env.shot(guest, "stage-06-guest-speaking", shots)
    await env.shot(host, "stage-07-host-sees-guest-speaking", shots)

    chat_seen = asyncio.ensure_future(listener.next_event("chat"))
    await guest.get_by_label("Message").fill("Hello from Chrome")
    await guest.get_by_role("button", name="Send").click()
    from_browser = (await asyncio.wait_for(chat_seen, 5)).data
    await host.locator("#messages .message-text", has_text="Hello from Chrome").wait_for()
    await listener.request("send_chat", text="Hi from Python")
    await guest.locator("#messages .message-text", has_text="Hi from Python").wait_for()
    step("chat")
    await env.shot(guest, "stage-08-chat", shots)

    muted_seen = asyncio.ensure_future(
        listener.next_event("muted", where=lambda d: d["participant"] == "guest")
    )
    await host.get_by_role("button", name="Mute guest").click()
    muted = (await asyncio.wait_for(muted_seen, 5)).data
    await guest.get_by_role("button", name="Unmute", exact=True).wait_for()
    await eventually(lambda: slot_of(listener, "guest") is None, timeout=5)
    step("moderator-muted")
    await env.shot(guest, "stage-09-guest-muted-by-host", shots)
    await env.shot(host, "stage-10-host-view", shots)
    guest_mic_enabled = await guest.evaluate("window.podiumDemo.client.microphone.enabled")
    server_speaking = await host.evaluate("window.podiumDemo.state.serverSpeaking")
    await guest.context.close()
    await host.context.close()
    return {
        "steps": steps,
        "heard": heard,
        "chat_from_browser": from_browser,
        "muted_event": muted,
        "guest_mic_enabled_after_mute": guest_mic_enabled,
        "indicators_from_server": server_speaking,
        "screenshots": shots,
    }


async def tls_listener(env: Env) -> dict[str, Any]:
    """https and wss with a test certificate: a Python speaker heard by a Chromium listener."""
    cert, key = env.tls
    room, shots = "secure", list[str]()
    config = make_config(serve_demo=True, tls_cert=str(cert), tls_key=str(key))
    server = PodiumServer(config)
    await server.start()
    speaker = None
    try:
        speaker = await PodiumClient.connect(
            server.url,
            token("py-speaker", "speaker", room=room),
            publish=ToneTrack(PYTHON_TONE, 0.5),
            host_addresses=LOOPBACK,
            ssl=ssl.create_default_context(cafile=str(cert)),
        )
        await speaker.wait_connected()
        base = f"https://127.0.0.1:{server.port}"
        page = await env.page(room, "chrome-listener", "listener", base=base)
        await page.wait_for_function("window.podiumDemo.client.slotOf('py-speaker') !== undefined")
        audio = await page.evaluate(PAGE_AUDIO_JS, {"identity": "py-speaker", "ms": 1500})
        secure = await page.evaluate(
            "({page: location.href, ws: window.podiumDemo.client.ws.url,"
            " secureContext: window.isSecureContext})"
        )
        await env.shot(page, "tls-01-browser-listener-over-wss", shots)
        await page.context.close()
    finally:
        if speaker is not None:
            await speaker.close()
        await server.stop()
    return {"server_url": server.url, "audio": audio, "secure": secure, "screenshots": shots}


async def red_through_relay(env: Env) -> dict[str, Any]:
    """Chrome speaker → 5 % loss → server → 5 % loss → Chrome listener (each leg 40 ± 10 ms),
    RED on both legs:
    what the listener's receiver lost and concealed over a window of steady talk."""
    room, shots = "lossy", list[str]()
    lossy = Impairment(loss=0.05, delay=0.03, jitter=0.02)  # 5 %, 40 ± 10 ms, as in issue #15
    uplink = ImpairmentRelay(up=lossy, seed=11)
    downlink = ImpairmentRelay(down=lossy, seed=12)
    for relay in (uplink, downlink):
        await relay.start()
    try:
        speaker = await env.page(room, "chrome-speaker", "speaker", relay=uplink)
        listener = await env.page(room, "chrome-listener", "listener", relay=downlink)
        await listener.wait_for_function(
            "window.podiumDemo.client.slotOf('chrome-speaker') !== undefined"
        )
        await asyncio.sleep(1.0)  # jitter buffer settled
        args = {"identity": "chrome-speaker"}
        before = await listener.evaluate(LOSS_STATS_JS, args)
        drops = (uplink.up.dropped, downlink.down.dropped)
        await asyncio.sleep(8.0)
        after = await listener.evaluate(LOSS_STATS_JS, args)
        window = {k: after[k] - before[k] for k in before if isinstance(before[k], (int, float))}
        await env.shot(listener, "lossy-01-listener", shots)
        result = {
            "before": before,
            "after": after,
            "window": window,
            "relay_dropped": {
                "uplink": uplink.up.dropped - drops[0],
                "downlink": downlink.down.dropped - drops[1],
            },
            "speaker_answer": (await speaker.evaluate(PAGE_RTC_JS))["answer"],
            "listener_answer": (await listener.evaluate(PAGE_RTC_JS))["answer"],
            "server_red_recovered": media_of(env.server.rooms[room]).stats["red_recovered"],
            "screenshots": shots,
        }
        await speaker.context.close()
        await listener.context.close()
        return result
    finally:
        for relay in (uplink, downlink):
            relay.close()


TURN_PORT, TURN_SECRET = 3478, "browser-turn-secret"


@contextlib.asynccontextmanager
async def coturn(workdir: Path) -> AsyncIterator[None]:
    """Debian's coturn on 127.0.0.1 (this namespace's only address), shared-secret auth."""
    if shutil.which("turnserver") is None:
        raise RuntimeError("coturn is not installed (apt-get install coturn)")
    command = ["turnserver", "-n", "--no-cli", "--no-dtls", "--no-tls", "--fingerprint"]
    command += ["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--allow-loopback-peers"]
    command += [f"--listening-port={TURN_PORT}", "--use-auth-secret", "--realm=podium.test"]
    command += [f"--static-auth-secret={TURN_SECRET}", f"--userdb={workdir / 'turndb'}"]
    command += [f"--pidfile={workdir / 'turn.pid'}", "--log-file=stdout", "--simple-log"]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(200):  # listening within a second or two
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", TURN_PORT)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        yield
    finally:
        proc.terminate()
        await proc.wait()


async def turn_listener(env: Env) -> dict[str, Any]:
    """Chromium with a relay-only policy (the demo's ``relay=1``) hears a Python speaker
    through coturn, with the credential its join response carried."""
    room, shots = "relayed", list[str]()
    turn = IceServer((f"turn:127.0.0.1:{TURN_PORT}",), secret=TURN_SECRET)
    server = PodiumServer(make_config(serve_demo=True, ice_servers=(turn,)))
    with tempfile.TemporaryDirectory() as tmp:
        async with coturn(Path(tmp)):
            await server.start()
            speaker = None
            try:
                speaker = await PodiumClient.connect(
                    server.url,
                    token("py-speaker", "speaker", room=room),
                    publish=ToneTrack(PYTHON_TONE, 0.5),
                    host_addresses=LOOPBACK,
                )
                await speaker.wait_connected()
                base = f"http://127.0.0.1:{server.port}"
                page = await env.page(
                    room, "chrome-relayed", "listener", base=base, query="&relay=1"
                )
                await page.wait_for_function(
                    "window.podiumDemo.client.slotOf('py-speaker') !== undefined"
                )
                audio = await page.evaluate(PAGE_AUDIO_JS, {"identity": "py-speaker", "ms": 1500})
                rtc = await page.evaluate(PAGE_RTC_JS)
                ice_servers = await page.evaluate("window.podiumDemo.client.joinInfo.ice_servers")
                await env.shot(page, "turn-01-browser-listener-relayed", shots)
                await page.context.close()
            finally:
                if speaker is not None:
                    await speaker.close()
                await server.stop()
    return {"audio": audio, "pair": rtc["pair"], "ice_servers": ice_servers, "screenshots": shots}


INSECURE_HOST = "podium.test"  # Chromium resolves it to 127.0.0.1: an http origin, not local

PAGE_MIC_JS = """
() => ({
  secureContext: window.isSecureContext,
  mic: document.getElementById("mic").textContent,
  micError: document.getElementById("mic-error").hidden ? null
    : document.getElementById("mic-error").textContent,
  connection: document.getElementById("connection").textContent,
  microphone: window.podiumDemo.client.microphone !== null,
})
"""


async def insecure_speaker(env: Env) -> dict[str, Any]:
    """A speaker on the demo page over plain http on a LAN-like name: the browser gives no
    microphone, and the page says so instead of showing "Mute" over silence."""
    room, shots = "insecure", list[str]()
    base = f"http://{INSECURE_HOST}:{env.server.port}"
    page = await env.page(room, "lan-speaker", "speaker", base=base)
    await page.locator("#mic-error").wait_for()
    shown = await page.evaluate(PAGE_MIC_JS)
    await asyncio.sleep(0.5)  # anything sent would have reached the server by now
    facts = await producer_facts(env.server, room, "lan-speaker")
    await env.shot(page, "insecure-01-speaker-without-microphone", shots)
    await page.get_by_role("button", name="Turn on microphone").click()  # asks again
    await page.locator("#mic-error").wait_for()
    await page.context.close()
    return {"shown": shown, "server_packets": facts["packets"], "screenshots": shots}


async def loss_feedback(env: Env) -> dict[str, Any]:
    """Chrome → server → 10 % loss → Chrome (no RED), with and without loss feedback, each on
    a server of its own: the loss the speaker's sender is told (what its Opus encoder uses
    to size in-band FEC) and what the listener concealed."""
    results: dict[str, Any] = {"screenshots": []}
    for feedback in (True, False):
        media = MediaConfig(
            announce_addresses=LOOPBACK,
            sender_report_interval=1.0,
            red=False,
            loss_feedback=feedback,
        )
        server = PodiumServer(make_config(serve_demo=True, media=media))
        await server.start()
        relay = ImpairmentRelay(down=Impairment(loss=0.1), seed=21)
        await relay.start()
        try:
            own = Env(server, env.browser, env.out, [], env.tls)
            speaker = await own.page("feedback", "chrome-speaker", "speaker")
            listener = await own.page("feedback", "chrome-listener", "listener", relay=relay)
            await listener.wait_for_function(
                "window.podiumDemo.client.slotOf('chrome-speaker') !== undefined"
            )
            args = {"identity": "chrome-speaker"}
            before = await listener.evaluate(LOSS_STATS_JS, args)
            await asyncio.sleep(5.0)  # a few receiver reports each way
            after = await listener.evaluate(LOSS_STATS_JS, args)
            window = {k: after[k] - before[k] for k in before if isinstance(before[k], int)}
            told = await speaker.evaluate(REMOTE_INBOUND_JS)
            results["with_feedback" if feedback else "without_feedback"] = {
                "speaker_told_loss": told["fractionLost"],
                "listener": window,
            }
            await speaker.context.close()
            await listener.context.close()
        finally:
            relay.close()
            await server.stop()
    return results


async def reconnect(env: Env) -> dict[str, Any]:
    """The browser listener's path cut for 3, 10 and 25 s: the SDK resumes by itself."""
    room, shots = "resume", list[str]()
    await env.client("py-speaker", "speaker", room, publish=ToneTrack(PYTHON_TONE, 0.5))
    host = await PodiumClient.connect(
        env.server.url, token("py-host", "host", room=room), media=False
    )
    env.clients.append(host)
    seen: list[tuple[str, dict[str, Any]]] = []

    async def watch() -> None:
        async for event in host.events():
            seen.append((event.name, event.data))

    watcher = asyncio.create_task(watch())
    assert env.server.udp is not None
    link = await Link(env.server.port, env.server.udp.port).start()
    try:
        page = await env.page(room, "chrome-listener", "listener", link=link)
        await page.wait_for_function("window.podiumDemo.client.slotOf('py-speaker') !== undefined")
        await page.evaluate(
            "() => { window.__events = [];"
            " window.podiumDemo.client.on('*', (data, name) => window.__events.push(name)); }"
        )
        cuts = []
        for seconds in CUTS:
            link.cut()
            await asyncio.sleep(seconds)
            label = await page.locator("#connection").text_content()
            await env.shot(page, f"resume-{seconds:.0f}s-cut", shots)
            link.restore()
            back = await page.evaluate(AUDIO_BACK_JS, {"identity": "py-speaker", "timeout": 10000})
            await page.wait_for_function("window.podiumDemo.client.state === 'connected'")
            events = await page.evaluate("() => window.__events.splice(0)")
            cuts.append({"seconds": seconds, "audio_back": back, "label": label, "events": events})
        await env.shot(page, "resume-after", shots)
        await page.context.close()
    finally:
        await link.close()
    watcher.cancel()
    left = [d for name, d in seen if name == "attendees" and "chrome-listener" in d["left"]]
    told = [name for name, d in seen if d.get("participant") == "chrome-listener"]
    return {"cuts": cuts, "host_saw_leave": bool(left), "host_saw": told, "screenshots": shots}


async def ice_restart(env: Env) -> dict[str, Any]:
    """The browser listener's media path alone cut for 10 s (its WebSocket stays up): ICE
    goes "disconnected", podium.js restarts it on the same peer connection, and the audio
    comes back on it when the path does."""
    room, shots = "ice-restart", list[str]()
    await env.client("py-speaker", "speaker", room, publish=ToneTrack(PYTHON_TONE, 0.5))
    assert env.server.udp is not None
    link = await Link(env.server.port, env.server.udp.port).start()
    try:
        page = await env.page(room, "chrome-listener", "listener", link=link)
        await page.wait_for_function("window.podiumDemo.client.slotOf('py-speaker') !== undefined")
        await page.evaluate("() => { window.__pc = window.podiumDemo.client.pc; }")
        link.cut(tcp=False, udp=True)
        await asyncio.sleep(ICE_CUT)
        during = await page.evaluate(
            "() => { const c = window.podiumDemo.client;"
            " return {ice: c.pc.iceConnectionState, restarts: c.iceRestarts}; }"
        )
        link.restore()
        back = await page.evaluate(AUDIO_BACK_JS, {"identity": "py-speaker", "timeout": 10000})
        after = await page.evaluate(
            "() => { const c = window.podiumDemo.client;"
            " return {same_pc: c.pc === window.__pc, restarts: c.iceRestarts,"
            " ice: c.pc.iceConnectionState, state: c.state}; }"
        )
        await env.shot(page, "ice-restart-after", shots)
        await page.context.close()
    finally:
        await link.close()
    peer_restarts = media_of(env.server.rooms[room]).stats.get("ice_restarts", 0)
    return {
        "during": during,
        "audio_back": back,
        "after": after,
        "server_ice_restarts": peer_restarts,
        "screenshots": shots,
    }


async def cluster_failover(env: Env) -> dict[str, Any]:
    """podium.js in a two-node cluster: a full node's redirect is followed, then the node the
    page landed on is killed (-9) and the SDK resumes through the other one by itself."""
    room, shots, workdir = "cluster", list[str](), env.out / "cluster"
    workdir.mkdir(exist_ok=True)
    redis_server = RedisServer(workdir)
    redis_server.start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    nodes: list[Node] = []
    try:
        full = await launch_node(
            redis_server.url, redis, "node-a", workdir, "--max-participants", "1"
        )
        nodes.append(full)
        other = await launch_node(redis_server.url, redis, "node-b", workdir)
        nodes.append(other)
        speaker = await PodiumClient.connect(
            full.url,
            token("py-speaker", "host", room=room),
            host_addresses=LOOPBACK,
            publish=ToneTrack(PYTHON_TONE, 0.5),
        )
        env.clients.append(speaker)
        await speaker.wait_connected()
        page = await env.page(room, "chrome-listener", "listener", query=f"&ws={full.url}")
        joined_through = await page.evaluate("window.podiumDemo.client.url")
        heard = await page.evaluate(AUDIO_BACK_JS, {"identity": "py-speaker", "timeout": 10000})
        await env.shot(page, "cluster-redirected", shots)
        other.process.send_signal(signal.SIGKILL)  # the page's node
        back = await page.evaluate(AUDIO_BACK_JS, {"identity": "py-speaker", "timeout": 15000})
        await env.shot(page, "cluster-after-failover", shots)
        url_after = await page.evaluate("window.podiumDemo.client.url")
        await page.context.close()
        return {
            "nodes": {"full": full.url, "other": other.url},
            "joined_through": joined_through,
            "heard_s": heard,
            "failover_audio_back_s": back,
            "url_after": url_after,
            "screenshots": shots,
        }
    finally:
        stop_nodes(nodes)
        await redis.aclose()
        redis_server.stop()


SCENARIOS: dict[str, Callable[[Env], Awaitable[dict[str, Any]]]] = {
    "speaker_interop": speaker_interop,
    "browser_listener": browser_listener,
    "stage_flow": stage_flow,
    "tls_listener": tls_listener,
    "red_through_relay": red_through_relay,
    "insecure_speaker": insecure_speaker,
    "turn_listener": turn_listener,
    "loss_feedback": loss_feedback,
    "reconnect": reconnect,
    "ice_restart": ice_restart,
    "cluster_failover": cluster_failover,
}
TIMEOUTS = {"reconnect": sum(CUTS) + 40.0, "ice_restart": ICE_CUT + 30.0}


def spki_hash(cert: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's SPKI allow-list takes."""
    public_key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def run(out: Path) -> dict[str, Any]:
    bring_up_loopback()
    if interfaces() != ["lo"]:
        raise SystemExit(f"not in a private network namespace (interfaces: {interfaces()})")
    out.mkdir(parents=True, exist_ok=True)
    wav = out / "fake-mic-1000hz.wav"
    write_tone(wav, BROWSER_TONE)
    tls = dev_certificate(out / "tls", ["127.0.0.1", "localhost"])
    room = RoomSettings(empty_timeout=0, attendees=AttendeeConfig(batch_interval=0.2))
    server = PodiumServer(make_config(serve_demo=True, room=room))
    await server.start()
    results: dict[str, Any] = {"scenarios": {}}
    started = time.monotonic()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--use-fake-device-for-media-stream",
                    "--use-fake-ui-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                    "--allow-loopback-in-peer-connection",
                    "--autoplay-policy=no-user-gesture-required",
                    f"--ignore-certificate-errors-spki-list={spki_hash(tls[0])}",
                    f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
                ],
            )
            results["browser_version"] = browser.version
            results["launch_seconds"] = time.monotonic() - started
            for name, scenario in SCENARIOS.items():
                env = Env(server, browser, out, [], tls)
                begun = time.monotonic()
                try:
                    limit = TIMEOUTS.get(name, SCENARIO_TIMEOUT)
                    data = await asyncio.wait_for(scenario(env), limit)
                    results["scenarios"][name] = {"ok": True, **data}
                except BaseException as exc:  # recorded for the test to report
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    results["scenarios"][name] = {"ok": False, "error": traceback.format_exc()}
                finally:
                    results["scenarios"][name]["seconds"] = time.monotonic() - begun
                    for client in env.clients:
                        await client.close()
            await browser.close()
    finally:
        await server.stop()
    results["total_seconds"] = time.monotonic() - started
    return results


def main() -> None:
    out, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    results = asyncio.run(run(out))
    result_path.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
