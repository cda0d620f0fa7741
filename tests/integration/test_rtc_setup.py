"""Process-wide aiortc settings: one DTLS certificate, renewed before it expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiortc import RTCCertificate, RTCPeerConnection

from sfu.rtc import setup
from signaling.server.server import PodiumServer
from tests.conftest import Connect
from tests.rooms import media_of


async def test_peer_connections_share_one_certificate_and_its_fingerprints() -> None:
    setup.share_dtls_certificate()
    first, second = RTCPeerConnection(), RTCPeerConnection()
    try:
        ours = [pc._RTCPeerConnection__certificates[0] for pc in (first, second)]  # type: ignore[attr-defined]
        assert ours[0] is ours[1]
        assert ours[0].getFingerprints() is ours[1].getFingerprints()  # computed once
    finally:
        await first.close()
        await second.close()


def test_a_certificate_about_to_expire_is_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    setup.share_dtls_certificate()
    current = RTCCertificate.generateCertificate()
    assert RTCCertificate.generateCertificate() is current
    soon = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(type(current), "expires", property(lambda self: soon))
    renewed = RTCCertificate.generateCertificate()
    assert renewed is not current


async def test_dtls_handshakes_share_one_openssl_context(
    server: PodiumServer, connect: Connect
) -> None:
    """Built once per certificate: each join used to build its own (a tenth of its CPU)."""
    for identity in ("a", "b"):
        await connect(identity)
    peers = media_of(server.rooms["room1"]).peers.values()
    contexts = {id(p.pc.getTransceivers()[0].receiver.transport._ssl.get_context()) for p in peers}  # type: ignore[union-attr]
    assert len(contexts) == 1
