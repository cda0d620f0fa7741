"""https/wss: the server's TLS context, and a self-signed certificate for development.

Browsers hand the microphone only to secure pages (https, or http on localhost), and
an https page may open only ``wss://``.  Production puts a real certificate on Podium
(``--tls-cert``/``--tls-key``) or on a reverse proxy in front of it
(docs/operations.md).  ``podium serve --dev`` on an address other than loopback makes a
self-signed one so a phone or laptop on the LAN can speak on the demo page after
accepting a browser warning once.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sfu.rtc.setup import machine_addresses


def server_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The TLS context of the HTTP/WebSocket listener (``key`` None: it is in ``cert``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def self_signed(names: Iterable[str], days: int = 30) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its P-256 key (PEM) for ``names``
    (host names and IP addresses), valid ``days`` from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys(names))
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Podium dev ({names[0]})")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def dev_certificate(directory: Path, names: Iterable[str]) -> tuple[Path, Path]:
    """The self-signed certificate and key in ``directory``: the one made before while it
    names ``names`` and has a day left (browsers then keep trusting it), else a new one
    (the key file is mode 0600)."""
    names = list(names)
    cert_path, key_path = directory / "dev-cert.pem", directory / "dev-key.pem"
    if key_path.exists() and _still_good(cert_path, names):
        return cert_path, key_path
    cert_pem, key_pem = self_signed(names)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return cert_path, key_path


def _still_good(cert_path: Path, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        alternatives = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    named = {str(n) for n in alternatives.value.get_values_for_type(x509.IPAddress)}
    named |= set(alternatives.value.get_values_for_type(x509.DNSName))
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return set(names) <= named and left > datetime.timedelta(days=1)


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate, as browsers show it (AA:BB:...)."""
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def reachable_addresses(host: str) -> list[str]:
    """Where a listener on ``host`` is reached: that address, or for a wildcard this
    machine's addresses."""
    return (machine_addresses() or [host]) if host in ("0.0.0.0", "::", "") else [host]


def machine_names(host: str) -> list[str]:
    """What a dev certificate for a listener on ``host`` names: its addresses, this
    machine's host name, and localhost."""
    return [*reachable_addresses(host), socket.gethostname(), "localhost", "127.0.0.1"]
