"""Two network namespaces joined by a veth pair: a "server side" and a client that is not on it.

``python -m tests.netns SCENARIO`` runs inside a private namespace that the test made
(``unshare --net``, see ``run_scenario``): that namespace is the server side.  It
creates a second one for the clients, joins the two with a veth pair
(server ``10.0.1.1/24`` ⇄ client ``10.0.1.2/24``) and runs a real ``podium serve``
(``python -m signaling.server.cli``: uvloop, as deployed) plus whatever the scenario needs.
The client namespace routes only where a scenario says, so a scenario decides what
the clients can reach.  The clients (``client`` below, run in the client namespace)
join a speaker playing a tone and a listener, and print JSON: the frequency the
listener heard and the ICE candidate pair it used.  Nothing leaves the namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from signaling.server.tls import self_signed

SERVER_ADDRESS, CLIENT_ADDRESS = "10.0.1.1", "10.0.1.2"
MEDIA_ADDRESS = "10.0.0.1"  # Podium's media address on the server side (TURN scenarios)
NAT_ADDRESS = "192.0.2.10"  # TEST-NET-1: the "public" address in front of a 1:1 NAT
API_KEY, API_SECRET = "netnskey", "netns-secret-0123456789abcdef0123456789"
TURN_SECRET = "turn-shared-secret-0123456789"
TURN_USER, TURN_PASSWORD = "podium", "static-turn-password"
HTTP_PORT, UDP_PORT = 7880, 7882
TONE = 440.0


def unshare_command() -> list[str]:
    # As root a network namespace is enough; otherwise map ourselves to root in a user one.
    return ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]


def namespaces_missing(*programs: str) -> str | None:
    """Why the scenarios cannot run here (None when they can)."""
    for program in ("unshare", "nsenter", "ip", *programs):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    probe = subprocess.run([*unshare_command(), "true"], capture_output=True, text=True)
    if probe.returncode:
        return f"no private network namespace: {probe.stderr.strip()}"
    return None


def run_scenario(name: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run ``name`` in a fresh namespace; its JSON result (the test asserts on it)."""
    done = subprocess.run(
        [*unshare_command(), sys.executable, "-m", "tests.netns", name],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise AssertionError(f"scenario {name} failed:\n{done.stdout}\n{done.stderr[-6000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the server side (inside the test's namespace) ------------------------------------
def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


class Topology:
    """The client namespace, held open by a sleeping process, and the veth pair to it."""

    def __init__(self) -> None:
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "podium0", "type", "veth", "peer", "name", "client0")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "echo ready; exec sleep 600"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None and self.holder.stdout.readline() == "ready\n"
        sh("ip", "link", "set", "client0", "netns", str(self.holder.pid))
        sh("ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "podium0")
        sh("ip", "link", "set", "podium0", "up")
        self.client_sh("ip link set lo up")
        self.client_sh(f"ip addr add {CLIENT_ADDRESS}/24 dev client0")
        self.client_sh("ip link set client0 up")

    def in_client(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-n", *argv]

    def client_sh(self, command: str) -> None:
        subprocess.run(self.in_client(["sh", "-c", command]), check=True)

    def clients(self, url: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        command = [sys.executable, "-m", "tests.netns", "client", "--url", url, *extra]
        done = subprocess.run(
            self.in_client(command),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )
        if done.returncode:
            raise RuntimeError(f"clients failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@contextlib.contextmanager
def podium(*options: str) -> Iterator[subprocess.Popen[str]]:
    """``podium serve`` on the server side, until it says it is listening."""
    command = [sys.executable, "-m", "signaling.server.cli", "serve", "--api-key", API_KEY]
    command += ["--api-secret", API_SECRET, "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    proc = subprocess.Popen(
        [*command, "--udp-port", str(UDP_PORT), *options],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    log = []
    for line in proc.stderr:
        log.append(line)
        print(line, end="", file=sys.stderr)
        if "Podium listening on" in line:
            break
    else:
        raise RuntimeError("podium serve exited:\n" + "".join(log))
    proc.log = log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=15)[1]
        print(rest, file=sys.stderr)


def nat() -> dict[str, Any]:
    """``--announce-address`` of a 1:1 NAT's outside address the machine does not have.

    Podium starts while ``NAT_ADDRESS`` is nobody's address, so it must fall back to
    the wildcard socket.  Then the "NAT" comes up as the server side sees it: datagrams
    to ``NAT_ADDRESS`` are delivered to this host (the address goes on ``lo``, as a
    DNAT would deliver them) and replies to the clients leave from it (the route's
    ``src``, as the NAT's SNAT would rewrite them).  The clients route ``NAT_ADDRESS``
    through the veth and know no other media address.
    """
    topology = Topology()
    try:
        with podium("--announce-address", NAT_ADDRESS) as proc:
            sh("ip", "addr", "add", f"{NAT_ADDRESS}/32", "dev", "lo")
            sh("ip", "route", "replace", "10.0.1.0/24", "dev", "podium0", "src", NAT_ADDRESS)
            topology.client_sh(f"ip route add {NAT_ADDRESS}/32 via {SERVER_ADDRESS}")
            result = topology.clients(f"ws://{SERVER_ADDRESS}:{HTTP_PORT}/rtc")
            result["log"] = "".join(proc.log)  # type: ignore[attr-defined]
            result["sockets"] = subprocess.run(
                ["ss", "-uln"], capture_output=True, text=True
            ).stdout
    finally:
        topology.close()
    return result


# -- the clients (inside the client namespace) ----------------------------------------
async def clients(url: str, connect_timeout: float) -> dict[str, Any]:
    from signaling.client.client import PodiumClient
    from signaling.wire.tokens import mint_token
    from tests.media import ToneTrack, dominant_frequency, record

    def token(identity: str, role: str) -> str:
        return mint_token(API_KEY, API_SECRET, identity=identity, room="netns", role=role)

    options: dict[str, Any] = {"host_addresses": [CLIENT_ADDRESS], "timeout": 20.0}
    speaker = await PodiumClient.connect(
        url, token("alice", "speaker"), publish=ToneTrack(TONE), **options
    )
    listener = await PodiumClient.connect(url, token("bob", "listener"), **options)
    try:
        try:
            for client in (speaker, listener):
                await client.wait_connected(timeout=connect_timeout)
        except (ConnectionError, TimeoutError) as exc:
            return {"connected": False, "error": repr(exc)}
        deadline = time.monotonic() + 10
        while listener.slots[0].participant != "alice" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        track = listener.slots[0].track
        assert track is not None
        samples = await record(track, 1.5)
        assert listener.pc is not None
        ice = listener.pc.getTransceivers()[0].receiver.transport.transport
        pair = ice._connection._nominated.get(1)
        return {
            "connected": True,
            "frequency": dominant_frequency(samples[24000:]),
            "local": pair.local_candidate.type if pair else None,
            "remote": [pair.remote_candidate.host, pair.remote_candidate.port] if pair else None,
            "ice_servers": listener.join_info.get("ice_servers"),
        }
    finally:
        for client in (speaker, listener):
            await client.close()


@contextlib.contextmanager
def coturn(directory: Path, *auth: str, port: int) -> Iterator[None]:
    """Debian's coturn on the veth address only: the clients reach it, and it relays
    from ``MEDIA_ADDRESS`` (which only the server side can reach)."""
    command = ["turnserver", "-n", "--no-cli", "--no-dtls", "--fingerprint", "--simple-log"]
    command += [f"--listening-ip={SERVER_ADDRESS}", f"--relay-ip={MEDIA_ADDRESS}"]
    command += [f"--listening-port={port}", f"--tls-listening-port={port + 1}"]
    command += [f"--cert={directory / 'cert.pem'}", f"--pkey={directory / 'key.pem'}"]
    command += [f"--userdb={directory / f'turndb-{port}'}", "--realm=podium.test"]
    command += [f"--pidfile={directory / f'turn-{port}.pid'}", "--log-file=stdout", *auth]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
        print("coturn:", output[-3000:], file=sys.stderr)


def _listening(port: int) -> bool:
    sockets = subprocess.run(["ss", "-tln"], capture_output=True, text=True).stdout
    return f"{SERVER_ADDRESS}:{port + 1} " in sockets


def turn() -> dict[str, Any]:
    """The clients reach Podium's WebSocket and coturn, but not Podium's media address:
    they have no route to ``MEDIA_ADDRESS``, so audio flows through TURN or not at all.
    One podium per TURN URL (aiortc uses only the first TURN URL it is given)."""
    topology = Topology()
    sh("ip", "addr", "add", f"{MEDIA_ADDRESS}/32", "dev", "lo")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cert, key = self_signed([SERVER_ADDRESS])
        (directory / "cert.pem").write_bytes(cert)
        (directory / "key.pem").write_bytes(key)
        trust = {"SSL_CERT_FILE": str(directory / "cert.pem")}  # for turns:
        rest = ["--use-auth-secret", f"--static-auth-secret={TURN_SECRET}"]
        static = ["--lt-cred-mech", f"--user={TURN_USER}:{TURN_PASSWORD}"]
        cases = {
            "udp": (f"turn:{SERVER_ADDRESS}:3478", "--turn-secret", TURN_SECRET),
            "tcp": (f"turn:{SERVER_ADDRESS}:3478?transport=tcp", "--turn-secret", TURN_SECRET),
            "tls": (f"turns:{SERVER_ADDRESS}:3479", "--turn-secret", TURN_SECRET),
            "static": (f"turn:{SERVER_ADDRESS}:3480", "--turn-username", TURN_USER),
        }
        try:
            with coturn(directory, *rest, port=3478), coturn(directory, *static, port=3480):
                with podium("--announce-address", MEDIA_ADDRESS):  # no TURN: no way through
                    results["direct"] = topology.clients(
                        f"ws://{SERVER_ADDRESS}:{HTTP_PORT}/rtc", "--connect-timeout", "8"
                    )
                for case, (url, *credentials) in cases.items():
                    options = ["--announce-address", MEDIA_ADDRESS, "--ice-server", url]
                    if case == "static":
                        options += ["--turn-credential", TURN_PASSWORD]
                    with podium(*options, *credentials):
                        results[case] = topology.clients(
                            f"ws://{SERVER_ADDRESS}:{HTTP_PORT}/rtc", env=trust
                        )
        finally:
            topology.close()
    return results


def dev_tls() -> dict[str, Any]:
    """``podium serve --dev --host 0.0.0.0`` on a machine with a LAN address: https/wss with
    a self-signed certificate it makes, and instructions that let a client trust it."""
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "lo")
    with tempfile.TemporaryDirectory() as cache:
        command = [
            sys.executable,
            "-m",
            "signaling.server.cli",
            "serve",
            "--dev",
            "--host",
            "0.0.0.0",
        ]
        proc = subprocess.Popen(
            [*command, "--port", str(HTTP_PORT), "--udp-port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "XDG_CACHE_HOME": cache},
        )
        assert proc.stdout is not None
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if "mint a token" in line:
                break
        try:
            text = "".join(banner)
            cafile = text.split("cafile='")[1].split("'")[0]
            result = asyncio.run(_secure_join(f"{SERVER_ADDRESS}:{HTTP_PORT}", cafile))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        return {
            "banner": text,
            "key_mode": oct(os.stat(Path(cafile).parent / "dev-key.pem").st_mode & 0o777),
            **result,
        }


async def _secure_join(address: str, cafile: str) -> dict[str, Any]:
    import ssl

    import aiohttp

    from signaling.client.client import PodiumClient
    from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
    from signaling.wire.tokens import mint_token

    trust = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://{address}/", ssl=trust) as page:
            status = page.status
        try:
            async with http.get(f"https://{address}/healthz"):
                untrusted = "accepted"
        except aiohttp.ClientConnectorCertificateError:
            untrusted = "refused"
    token = mint_token(DEV_API_KEY, DEV_API_SECRET, identity="ada", room="lan")
    client = await PodiumClient.connect(f"wss://{address}/rtc", token, media=False, ssl=trust)
    joined = client.join_info["participant"]["identity"]
    await client.close()
    return {"page_status": status, "untrusted": untrusted, "joined": joined}


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), re.DOTALL)


def client_docs() -> dict[str, Any]:
    """The Python examples of docs/client.md and README.md, run as written against
    ``podium serve --dev`` (the namespace's only addresses: 127.0.0.1 and 10.0.1.1)."""
    from signaling.server.dev import DEV_API_KEY, DEV_API_SECRET
    from signaling.wire.tokens import mint_token

    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "lo")
    repo = Path(__file__).resolve().parents[1]
    listen, speak, chat = python_blocks(repo / "docs" / "client.md")
    (readme,) = python_blocks(repo / "README.md")
    with tempfile.TemporaryDirectory() as tmp:
        write_wav(Path(tmp) / "hello.wav", TONE, seconds=10)
        proc = subprocess.Popen(
            [sys.executable, "-m", "signaling.server.cli", "serve", "--dev", "--udp-port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if "mint a token" in line:
                break

        def run(code: str, identity: str, role: str) -> subprocess.Popen[str]:
            token = mint_token(
                DEV_API_KEY, DEV_API_SECRET, identity=identity, room="demo", role=role
            )
            env = {
                **os.environ,
                "PODIUM_URL": f"ws://127.0.0.1:{HTTP_PORT}/rtc",
                "PODIUM_TOKEN": token,
            }
            return subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=tmp,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        try:
            programs = {
                "speak": run(speak, "speaker-bot", "speaker"),
                "listen": run(listen, "listener-bot", "listener"),
                "readme": run(readme, "readme-bot", "listener"),
            }
            results = {name: _finish(program) for name, program in programs.items()}
            results["chat"] = _finish(run(chat, "chat-bot", "speaker"))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return results


def _finish(program: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = program.communicate(timeout=60)
    return {"returncode": program.returncode, "stdout": out, "stderr": err[-3000:]}


def write_wav(path: Path, frequency: float, seconds: float) -> None:
    """``seconds`` of a ``frequency`` Hz tone as a 48 kHz s16 mono WAV file."""
    import wave

    import numpy as np

    t = np.arange(int(48_000 * seconds)) / 48_000
    samples = (0.5 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(48_000)
        f.writeframes(samples.tobytes())


SCENARIOS = {"nat": nat, "turn": turn, "dev_tls": dev_tls, "client_docs": client_docs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["client", *SCENARIOS])
    parser.add_argument("--url")
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    args = parser.parse_args()
    result = (
        asyncio.run(clients(args.url, args.connect_timeout))
        if args.scenario == "client"
        else SCENARIOS[args.scenario]()
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
