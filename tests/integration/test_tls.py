"""https and wss: a certificate given on the command line, or made for development."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from signaling.client.client import PodiumClient
from signaling.server.server import PodiumServer
from signaling.server.tls import dev_certificate, fingerprint
from tests.conftest import make_config, token
from tests.netns import namespaces_missing, run_scenario


async def test_tls_server_serves_https_and_wss_to_clients_that_trust_it(tmp_path: Path) -> None:
    cert, key = dev_certificate(tmp_path, ["127.0.0.1"])
    server = PodiumServer(make_config(tls_cert=str(cert), tls_key=str(key)))
    await server.start()
    try:
        assert server.url.startswith("wss://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{server.port}/healthz", ssl=trust) as r:
                assert (await r.json())["status"] == "ok"
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(f"https://127.0.0.1:{server.port}/healthz")
        client = await PodiumClient.connect(server.url, token("ada"), media=False, ssl=trust)
        assert client.join_info["participant"]["identity"] == "ada"
        await client.close()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await PodiumClient.connect(server.url, token("eve"), media=False)
    finally:
        await server.stop()


def test_dev_certificate_is_kept_while_it_fits_and_its_key_is_private(tmp_path: Path) -> None:
    cert, key = dev_certificate(tmp_path, ["192.0.2.1", "podium.lan"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = fingerprint(cert)
    assert len(first.split(":")) == 32
    dev_certificate(tmp_path, ["podium.lan"])  # named already: browsers keep trusting it
    assert fingerprint(cert) == first
    dev_certificate(tmp_path, ["192.0.2.2"])  # a new address: a new certificate
    assert fingerprint(cert) != first


def test_a_bad_certificate_is_refused_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text("not a certificate")
    command = [sys.executable, "-m", "signaling.server.cli", "serve", "--dev", "--port", "0"]
    done = subprocess.run(
        [*command, "--udp-port", "0", "--tls-cert", str(bogus), "--tls-key", str(bogus)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]  # after any start-up warning
    assert last.startswith("podium serve: cannot load the TLS certificate"), done.stderr
    assert "Traceback" not in done.stderr


def test_dev_mode_on_a_lan_address_makes_a_certificate_and_says_how_to_trust_it() -> None:
    """``podium serve --dev --host 0.0.0.0`` in a namespace with a LAN address (tests/netns.py):
    the banner's instructions are enough for a client to trust the server."""
    why = namespaces_missing()
    if why:
        pytest.skip(why)
    result = run_scenario("dev_tls")
    banner = result["banner"]
    assert "self-signed development certificate" in banner and "SHA-256 " in banner
    assert "demo page:  https://10.0.1.1:7880/" in banner
    assert "wss://0.0.0.0:7880/rtc" in banner
    assert result["key_mode"] == "0o600"
    assert result["page_status"] == 200 and result["joined"] == "ada"
    assert result["untrusted"] == "refused"
