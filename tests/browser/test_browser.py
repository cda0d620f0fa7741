"""Podium with real headless Chromium: the browser SDK, the demo page, Chrome interop.

The browser runs with a fake microphone playing a generated 1 kHz tone. Everything
(server, Python clients, Chromium) runs in a private network namespace: see
``tests/browser/driver.py``, which this module starts once under ``unshare --net`` and
whose JSON measurements the tests below check. Screenshots of every step are kept
under ``artifacts/browser/``.

Needs Debian's ``chromium``, Playwright for Python and ``unshare`` (``.ci/run`` installs
them); without them these tests fail, saying what is missing. Set
``PODIUM_SKIP_BROWSER=1`` to skip them deliberately on a machine without a browser.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.server.server import PodiumServer
from signaling.wire.tokens import verify_token
from tests.conftest import API_KEY, API_SECRET, make_config

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
DRIVER_TIMEOUT = 300.0  # the reconnect scenarios alone wait out 48 s of cuts
BROWSER_TONE, PYTHON_TONE = 1000.0, 440.0

pytestmark = pytest.mark.browser


def _unshare_command() -> list[str]:
    # As root a network namespace is enough; otherwise map ourselves to root in a user one.
    return ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]


def _missing_prerequisites() -> list[str]:
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("Playwright for Python (pip install -e '.[test]')")
    if shutil.which("unshare") is None:
        missing.append("unshare (apt-get install util-linux)")
    else:
        probe = subprocess.run([*_unshare_command(), "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            missing.append(f"a private network namespace ({probe.stderr.strip()})")
    return missing


@pytest.fixture(scope="module")
def browser_run() -> dict[str, Any]:
    """Run every browser scenario once (about 20 s) and return the measurements."""
    if os.environ.get("PODIUM_SKIP_BROWSER") == "1":
        pytest.skip("PODIUM_SKIP_BROWSER=1")
    missing = _missing_prerequisites()
    if missing:
        pytest.fail(
            "the browser tests need " + "; ".join(missing) + ". .ci/run installs them;"
            " set PODIUM_SKIP_BROWSER=1 to skip these tests on purpose.",
            pytrace=False,
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    results = ARTIFACTS / "results.json"
    results.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*_unshare_command(), sys.executable, "-m", "tests.browser.driver", ARTIFACTS, results],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the browser driver ran over {DRIVER_TIMEOUT} s: {exc.stderr!r}")
    log = proc.stdout + proc.stderr
    (ARTIFACTS / "driver.log").write_text(log)
    if proc.returncode != 0 or not results.exists():
        pytest.fail(f"the browser driver failed (exit {proc.returncode}):\n{log[-4000:]}")
    data: dict[str, Any] = json.loads(results.read_text())
    data["wall_seconds"] = time.monotonic() - started
    return data


def scenario(run: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = run["scenarios"][name]
    if not result["ok"]:
        pytest.fail(f"{name} failed in the browser driver:\n{result['error']}", pytrace=False)
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5000, shot
    return result


def test_browser_speaker_is_heard_by_a_python_listener(browser_run: dict[str, Any]) -> None:
    heard = scenario(browser_run, "speaker_interop")["heard"]
    assert abs(heard["frequency"] - BROWSER_TONE) < 5, heard
    assert heard["tone_db"] > -30, heard


def test_chrome_negotiates_opus_dtx_fec_audio_level_bundle_rtcp_mux(
    browser_run: dict[str, Any],
) -> None:
    result = scenario(browser_run, "speaker_interop")
    rtc = result["rtc"]
    answer = rtc["answer"]
    # The answer Chrome applied: RED (RFC 2198) around Opus, RED first so that Chrome sends
    # it, and Opus with DTX and in-band FEC.
    payload_types = {line.split()[0].split(":")[1] for line in re.findall(r"a=rtpmap:.*", answer)}
    assert payload_types == {"63", "111"}, payload_types
    assert "a=rtpmap:111 opus/48000/2" in answer and "a=rtpmap:63 red/48000/2" in answer
    assert "a=fmtp:63 111/111" in answer
    assert re.search(r"m=audio \d+ UDP/TLS/RTP/SAVPF 63 111\r\n", answer)
    fmtp = re.search(r"a=fmtp:111 (.*)", answer)
    assert fmtp and {"usedtx=1", "useinbandfec=1"} <= set(fmtp.group(1).strip().split(";"))
    assert re.search(r"a=extmap:\d+ urn:ietf:params:rtp-hdrext:ssrc-audio-level", answer)
    assert "a=group:BUNDLE 0 1 2 3" in answer  # uplink + 3 slots in one transport
    assert answer.count("a=rtcp-mux") == 4
    assert rtc["transports"] == 1 and rtc["dtlsState"] == "connected"
    # Chrome's encoder took the answer's parameters.
    assert rtc["outbound"]["mimeType"] == "audio/opus"
    assert "usedtx=1" in rtc["outbound"]["sdpFmtpLine"]
    assert "useinbandfec=1" in rtc["outbound"]["sdpFmtpLine"]
    # ICE over loopback: host candidates both sides (no mDNS: media permission is granted).
    assert rtc["pair"]["local"]["address"] == "127.0.0.1"
    assert rtc["pair"]["remote"] == {"address": "127.0.0.1", "type": "host", "protocol": "udp"}
    # The SDK's offer drops mDNS candidates, which the server could never resolve.
    assert ".local" not in rtc["mdns_filtered"] and "192.0.2.7" in rtc["mdns_filtered"]
    # Server side: Chrome's packets carry RFC 6464 levels (a -9 dBFS tone reads about 9-12).
    server = result["server"]
    assert server["level_age"] is not None and server["level_age"] < 0.5, server
    assert 3 <= server["audio_level"] <= 20, server
    # DTX: a muted (silent) microphone sends a few packets a second instead of 50.
    rate = result["packet_rate"]
    assert rate["talking"] >= 40, rate
    assert rate["muted"] <= 10, rate


def test_python_speaker_is_heard_in_the_browser(browser_run: dict[str, Any]) -> None:
    result = scenario(browser_run, "browser_listener")
    audio = result["audio"]
    assert "error" not in audio, audio
    peaks = [p for p in audio["peaks"] if p["db"] > -60]
    assert len(peaks) >= len(audio["peaks"]) // 2, audio["peaks"]  # tone for most of 1.5 s
    frequency = sorted(p["hz"] for p in peaks)[len(peaks) // 2]
    assert abs(frequency - PYTHON_TONE) < 5, audio["peaks"]
    # The forwarded audio-level extension reaches Chrome's receiver (0.5 amplitude ≈ -9 dBov).
    levels = [level for level in audio["rtpLevels"] if level is not None]
    assert levels and 0.2 < max(levels) < 0.6, audio["rtpLevels"]
    assert audio["stats"]["packetsReceived"] > 25, audio["stats"]
    assert result["audience_header"].startswith("1 listening"), result["audience_header"]


def test_browser_listener_over_https_and_wss_hears_a_speaker(browser_run: dict[str, Any]) -> None:
    """The page and its WebSocket over TLS (a test certificate Chromium is told to trust)."""
    result = scenario(browser_run, "tls_listener")
    assert result["server_url"].startswith("wss://127.0.0.1:")
    secure = result["secure"]
    assert secure["page"].startswith("https://") and secure["ws"].startswith("wss://"), secure
    assert secure["secureContext"] is True
    audio = result["audio"]
    assert "error" not in audio, audio
    peaks = [p for p in audio["peaks"] if p["db"] > -60]
    assert len(peaks) >= len(audio["peaks"]) // 2, audio["peaks"]
    assert abs(sorted(p["hz"] for p in peaks)[len(peaks) // 2] - PYTHON_TONE) < 5, audio["peaks"]


def test_demo_page_over_plain_http_says_the_microphone_is_off(
    browser_run: dict[str, Any],
) -> None:
    """Off localhost over http the browser has no microphone: the page says why and how to
    fix it, and claims neither "Mute" nor a connection that sends (nothing is sent)."""
    result = scenario(browser_run, "insecure_speaker")
    shown = result["shown"]
    assert shown["secureContext"] is False and shown["microphone"] is False, shown
    assert "https" in shown["micError"] and "not" in shown["micError"], shown
    assert shown["mic"] == "Turn on microphone", shown
    assert shown["connection"] == "Audio connected · your microphone is off", shown
    assert result["server_packets"] == 0


def test_browser_listener_hears_a_speaker_through_coturn(browser_run: dict[str, Any]) -> None:
    """Relay only: the browser must use the TURN server and credential the join handed it
    (Chromium refuses a turn: URL without one)."""
    result = scenario(browser_run, "turn_listener")
    (server,) = result["ice_servers"]
    assert server["urls"] == ["turn:127.0.0.1:3478"], server
    assert server["username"].endswith(":chrome-relayed") and server["credential"], server
    assert result["pair"]["local"]["type"] == "relay", result["pair"]
    audio = result["audio"]
    assert "error" not in audio, audio
    peaks = [p for p in audio["peaks"] if p["db"] > -60]
    assert len(peaks) >= len(audio["peaks"]) // 2, audio["peaks"]
    assert abs(sorted(p["hz"] for p in peaks)[len(peaks) // 2] - PYTHON_TONE) < 5, audio["peaks"]


def test_sdk_requests_events_and_errors_in_the_browser(browser_run: dict[str, Any]) -> None:
    sdk = scenario(browser_run, "browser_listener")["sdk"]
    text = "sent through the SDK"
    levels = sdk.pop("levels")  # the fallback for speaking indicators: RTP levels per slot
    assert set(levels) == {"py-speaker"} and 0.2 < levels["py-speaker"] < 0.6, levels
    assert sdk == {
        "sent": text,
        "seen": text,
        "streamed": text,
        "refused": ["PodiumError", "no_invitation"],
        "pong": "number",
    }


def test_demo_page_raise_hand_invite_accept_speak_chat_mute(browser_run: dict[str, Any]) -> None:
    result = scenario(browser_run, "stage_flow")
    assert result["steps"] == [
        "raised",
        "invited",
        "accepted",
        "unmuted",
        "speaking-indicator",
        "chat",
        "moderator-muted",
    ]
    heard = result["heard"]
    assert abs(heard["frequency"] - BROWSER_TONE) < 5 and heard["tone_db"] > -30, heard
    assert result["chat_from_browser"]["sender"] == "guest"
    assert result["chat_from_browser"]["text"] == "Hello from Chrome"
    assert result["muted_event"] == {"participant": "guest", "by": "host", "muted": True}
    assert result["guest_mic_enabled_after_mute"] is False  # the SDK closed the microphone
    assert result["indicators_from_server"] is True  # the page used the `speaking` events
    assert len(result["screenshots"]) == 10


@pytest.mark.browser
def test_chrome_red_through_5_percent_loss_on_both_legs_conceals_little(
    browser_run: dict[str, Any],
) -> None:
    # Each leg adds 40 ± 10 ms, as a real link does: on bare loopback Chrome's jitter buffer
    # can run so short that a lost frame is concealed before the next packet brings its copy.
    result = scenario(browser_run, "red_through_relay")
    for leg in ("speaker_answer", "listener_answer"):  # RED negotiated, and first
        assert re.search(r"m=audio \d+ UDP/TLS/RTP/SAVPF 63 111\r\n", result[leg]), leg
    window = result["window"]
    assert result["relay_dropped"]["uplink"] > 0 and result["relay_dropped"]["downlink"] > 0
    assert result["server_red_recovered"] > 0  # the uplink's losses repaired by the server
    loss = window["packetsLost"] / (window["packetsLost"] + window["packetsReceived"])
    concealed = window["concealedSamples"] / window["totalSamplesReceived"]
    assert loss > 0.01, window  # the listener's own leg really lost packets
    assert concealed < loss / 3, (concealed, loss, window)


@pytest.mark.browser
def test_chrome_speaker_is_told_what_its_listener_loses(browser_run: dict[str, Any]) -> None:
    result = scenario(browser_run, "loss_feedback")
    with_feedback, without = result["with_feedback"], result["without_feedback"]
    assert with_feedback["listener"]["packetsLost"] > 0  # 10 % on the listener's leg
    assert with_feedback["speaker_told_loss"] >= 0.04, result  # its encoder plans for it
    assert without["speaker_told_loss"] == 0, result  # the uplink itself is lossless


def test_browser_tests_stay_fast(browser_run: dict[str, Any]) -> None:
    # A guard against a runaway scenario, not a speed target: the tier runs 11 scenarios,
    # two of them waiting out link cuts (48 s in all).
    assert browser_run["wall_seconds"] < 200, browser_run["wall_seconds"]


# -- serving (no browser needed) --------------------------------------------------


async def test_demo_page_and_dev_tokens_are_served_only_in_dev_mode() -> None:
    for serve_demo in (False, True):
        server = PodiumServer(make_config(serve_demo=serve_demo))
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/") as page:
                    assert page.status == (200 if serve_demo else 404)
                    if serve_demo:
                        assert '<script type="module" src="/static/demo.js">' in await page.text()
                query = {"room": "r1", "identity": "ada", "role": "host"}
                async with http.get(f"{base}/dev/token", params=query) as minted:
                    assert minted.status == (200 if serve_demo else 404)
                    if serve_demo:
                        body = await minted.json()
                        claims = verify_token(body["token"], {API_KEY: API_SECRET})
                        assert (claims.identity, claims.room, claims.role) == ("ada", "r1", "host")
                async with http.get(f"{base}/dev/token", params={"role": "king"}) as bad:
                    assert bad.status == (400 if serve_demo else 404)
                for name in ("podium.js", "demo.js", "demo.css"):
                    async with http.get(f"{base}/static/{name}") as asset:
                        assert asset.status == (200 if serve_demo else 404), name
                        if serve_demo and name.endswith(".js"):
                            assert "javascript" in asset.content_type
        finally:
            await server.stop()


def test_a_browser_listener_cut_for_3_10_and_25_s_resumes_by_itself(
    browser_run: dict[str, Any],
) -> None:
    """podium.js notices the dead link, reconnects, resumes; audio is back within 2 s."""
    result = scenario(browser_run, "reconnect")
    assert [cut["seconds"] for cut in result["cuts"]] == [3.0, 10.0, 25.0]
    for cut in result["cuts"]:
        assert cut["audio_back"] is not None and cut["audio_back"] < 2.0, cut
        assert "disconnected" not in cut["events"] and "close" not in cut["events"], cut
        if cut["seconds"] >= 10:  # the page saw its link die and come back, and said so
            assert {"reconnecting", "reconnected"} <= set(cut["events"]), cut
            assert cut["label"] == "Reconnecting…", cut
    assert not result["host_saw_leave"]
    assert "reconnecting" in result["host_saw"] and "reconnected" in result["host_saw"]


def test_a_browser_follows_a_redirect_and_outlives_its_cluster_node(
    browser_run: dict[str, Any],
) -> None:
    """podium.js joins a full node, lands on the other; that one killed, it resumes back."""
    result = scenario(browser_run, "cluster_failover")
    nodes = result["nodes"]
    assert result["joined_through"] == nodes["other"], result
    assert result["heard_s"] is not None, result
    assert result["failover_audio_back_s"] is not None and result["failover_audio_back_s"] < 5
    assert result["url_after"] == nodes["full"], result


def test_a_browser_listener_whose_media_path_dies_restarts_ice_on_the_same_connection(
    browser_run: dict[str, Any],
) -> None:
    """ICE "disconnected" with the socket up: podium.js restarts ICE, no new peer connection."""
    result = scenario(browser_run, "ice_restart")
    assert result["during"]["restarts"] >= 1, result  # while the path was still cut
    assert result["server_ice_restarts"] >= 1, result
    assert result["audio_back"] is not None and result["audio_back"] < 2.0, result
    assert result["after"]["same_pc"] and result["after"]["state"] == "connected", result
