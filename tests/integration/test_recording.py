"""Recording the room's mix to Ogg/Opus: through signaling, across joins and leaves, and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest

from sfu.config import MediaConfig
from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from signaling.wire.errors import PodiumError
from tests.api_helpers import Api
from tests.conftest import API_KEY, API_SECRET, LOOPBACK, Connect, make_config, token
from tests.media import ToneTrack, tone_level_db
from tests.rooms import media_of

A, B, C = 440.0, 660.0, 880.0
RATE = 48_000


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[PodiumServer]:
    media = MediaConfig(announce_addresses=LOOPBACK)
    srv = PodiumServer(make_config(media=media, recordings_dir=str(tmp_path)))
    await srv.start()
    yield srv
    await srv.stop()


def read_ogg(path: Path) -> tuple[float, np.ndarray]:
    """(the container's duration in seconds, the decoded mono samples)."""
    with av.open(str(path)) as container:
        assert container.format.name == "ogg"
        assert container.streams.audio[0].codec_context.name == "opus"
        assert container.duration is not None
        duration = container.duration / av.time_base
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    return duration, np.concatenate(chunks).astype(np.float32)


def span(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[int(start * RATE) : int(end * RATE)]


@pytest.mark.slow
async def test_ten_seconds_with_speakers_leaving_and_joining(
    server: PodiumServer, connect: Connect, tmp_path: Path
) -> None:
    host = await connect("host", "host", publish=ToneTrack(A, 0.3))
    b = await connect("b", "speaker", publish=ToneTrack(B, 0.3))
    listener = await connect("listener")
    await asyncio.sleep(0.5)
    started = await host.request("start_recording")
    t0 = time.monotonic()
    event = await listener.next_event("recording_started")
    assert event.data == started and started["by"] == "host"
    assert started["recording"].startswith("room1-") and started["recording"].endswith(".ogg")
    await asyncio.sleep(4.0 - (time.monotonic() - t0))
    await b.leave()
    await asyncio.sleep(6.0 - (time.monotonic() - t0))
    await connect("c", "speaker", publish=ToneTrack(C, 0.3))
    await asyncio.sleep(10.0 - (time.monotonic() - t0))
    finished = await host.request("stop_recording")
    elapsed = time.monotonic() - t0  # 10 s, or a little more on a busy machine
    event = await listener.next_event("recording_finished")
    assert event.data == finished
    assert finished["recording"] == started["recording"]

    duration, samples = read_ogg(tmp_path / finished["recording"])
    assert abs(duration - elapsed) <= 0.1  # the file keeps wall-clock time, within 1 %
    assert abs(len(samples) / RATE - elapsed) <= 0.1
    assert abs(finished["duration"] - duration) <= 0.05
    everyone = span(samples, 0.5, 3.5)
    assert tone_level_db(everyone, A) > -30 and tone_level_db(everyone, B) > -30
    after_b = span(samples, 4.5, 5.5)
    assert tone_level_db(after_b, A) > -30 and tone_level_db(after_b, B) < -60
    with_c = span(samples, 7.5, 9.5)
    assert tone_level_db(with_c, A) > -30 and tone_level_db(with_c, C) > -30
    assert not media_of(server.rooms["room1"]).mixing.active  # recorded, not mixed for anyone


async def test_only_hosts_record_once_at_a_time(server: PodiumServer, connect: Connect) -> None:
    host = await connect("host", "host", media=False)
    speaker = await connect("speaker", "speaker", media=False)
    for request in ("start_recording", "stop_recording", "set_media_mode"):
        with pytest.raises(PodiumError) as refused:
            await speaker.request(request, mode="mix")
        assert refused.value.code == "not_permitted"
    with pytest.raises(PodiumError) as refused:
        await host.request("stop_recording")
    assert refused.value.code == "not_recording"
    await host.request("start_recording")
    with pytest.raises(PodiumError) as refused:
        await host.request("start_recording")
    assert refused.value.code == "already_recording"
    with pytest.raises(PodiumError) as refused:
        await host.request("set_media_mode", mode="loud")
    assert refused.value.code == "invalid_request"


async def test_the_server_api_starts_and_stops_a_recording(
    server: PodiumServer, connect: Connect, tmp_path: Path
) -> None:
    host = await connect("host", "host", publish=ToneTrack(A, 0.3))
    recording = "/v1/rooms/{room}/recording"
    async with aiohttp.ClientSession() as http:
        api = Api(server, http)
        started = await api("POST", recording, room="room1")
        assert started.status == 201 and started.body["by"] == ""
        assert (await host.next_event("recording_started")).data == started.body
        again = await api("POST", recording, room="room1")
        assert (again.status, again.error["code"]) == (409, "already_recording")
        await asyncio.sleep(1.0)
        finished = await api("DELETE", recording, room="room1")
        assert finished.status == 200 and 0.9 <= finished.body["duration"] <= 1.2
        again = await api("DELETE", recording, room="room1")
        assert (again.status, again.error["code"]) == (409, "not_recording")
        missing = await api("POST", recording, room="nowhere")
        assert missing.status == 404
    duration, samples = read_ogg(tmp_path / started.body["recording"])
    assert abs(duration - finished.body["duration"]) <= 0.05
    assert tone_level_db(span(samples, 0.2, 0.8), A) > -30


async def test_a_server_without_a_recordings_directory_refuses() -> None:
    srv = PodiumServer(make_config())
    await srv.start()
    try:
        client = await PodiumClient.connect(srv.url, token("host", "host"), media=False)
        with pytest.raises(PodiumError) as refused:
            await client.request("start_recording")
        assert refused.value.code == "recording_unavailable"
        await client.close()
    finally:
        await srv.stop()


# -- a real server process, stopped mid-recording ---------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert process.poll() is None, "the server exited"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


@pytest.mark.slow
async def test_sigterm_mid_recording_leaves_a_valid_file(tmp_path: Path) -> None:
    port = free_port()
    command = [
        *(sys.executable, "-m", "signaling.server.cli", "serve"),
        *("--api-key", API_KEY, "--api-secret", API_SECRET),
        *("--host", "127.0.0.1", "--port", str(port), "--announce-address", "127.0.0.1"),
        *("--recordings-dir", str(tmp_path), "--udp-port", "0"),
        *("--drain-timeout", "1"),  # SIGTERM finishes the recording at once, then drains
    ]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    clients: list[PodiumClient] = []
    try:
        await wait_healthy(port, process)
        url = f"ws://127.0.0.1:{port}/rtc"
        for identity, role, frequency in (("host", "host", A), ("b", "speaker", B)):
            client = await PodiumClient.connect(
                url,
                token(identity, role),
                publish=ToneTrack(frequency, 0.3),
                host_addresses=LOOPBACK,
            )
            clients.append(client)
            await client.wait_connected()
        started = await clients[0].request("start_recording")
        await asyncio.sleep(3.0)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        for client in clients:
            await client.close()
        if process.poll() is None:
            process.kill()
        log.close()
    duration, samples = read_ogg(tmp_path / started["recording"])
    assert 2.8 <= duration <= 4.5, duration  # up to the shutdown, which takes a moment
    assert abs(len(samples) / RATE - duration) <= 0.05
    heard = span(samples, 0.5, 2.5)
    assert tone_level_db(heard, A) > -30 and tone_level_db(heard, B) > -30
