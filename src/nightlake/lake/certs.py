"""The lake's own tiny PKI: a CA, a host certificate for 127.0.0.1/localhost, and a client proxy.

Everything in the lake speaks TLS with verification on: the Rucio server and XRootD's https present
the host certificate, clients trust the lake CA. Rucio's WebDAV protocol always presents
`X509_USER_PROXY`, and XrdHttp verifies any client certificate it is shown, so the proxy must be
signed by the same CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nightlake local lake"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + VALIDITY))


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def ensure(certs: Path) -> None:
    """Create CA, host and client certificates once; later calls keep the existing ones."""
    if (certs / "x509up").exists():
        return
    certs.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = (_builder("nightlake local lake CA", _name("nightlake local lake CA"), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    host_key = _key()
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    host = (_builder("localhost", ca.subject, host_key.public_key()).add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    client_key = _key()
    client = (_builder("nightlake-client", ca.subject, client_key.public_key())
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    _write(certs / "ca.pem", _pem_cert(ca))
    _write(certs / "ca.key", _pem_key(ca_key), 0o600)
    _write(certs / "host.pem", _pem_cert(host))
    _write(certs / "host.key", _pem_key(host_key), 0o600)
    _write(certs / "x509up", _pem_cert(client) + _pem_key(client_key), 0o600)
