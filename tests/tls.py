"""Certificates for the tests of TLS on the internal hop: a CA and a leaf it signs, or a
self-signed leaf, for 127.0.0.1 and localhost, written as PEM files (keys mode 0600)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pem:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return Pem(cert_path, key_path)


def certificate(
    directory: Path,
    stem: str = "internal",
    *,
    signer: tuple[Pem, ec.EllipticCurvePrivateKey] | None = None,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ca: bool = False,
) -> tuple[Pem, ec.EllipticCurvePrivateKey]:
    """A certificate for ``hosts`` (a CA's with ``ca``), signed by ``signer`` or by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    issuer_name, issuer_key = _name(stem), key
    if signer is not None:
        issuer_cert = x509.load_pem_x509_certificate(signer[0].cert.read_bytes())
        issuer_name, issuer_key = issuer_cert.subject, signer[1]
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names and not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return _write(directory, stem, cert, key), key


def ca_and_leaf(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> tuple[Pem, Pem]:
    """A CA, and a leaf for ``hosts`` that it signed."""
    ca = certificate(directory, "ca", ca=True)
    leaf, _ = certificate(directory, "internal", signer=ca, hosts=hosts)
    return ca[0], leaf
