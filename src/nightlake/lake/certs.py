"""The lake's own tiny PKI: a CA, a host certificate for 127.0.0.1/localhost, and RFC 3820 proxies.

Everything in the lake speaks TLS with verification on: the Rucio server and XRootD's https present
the host certificate, clients trust the lake CA. The XRootD servers authenticate their clients with
it too (https: the TLS client certificate; root://: GSI), so the lake's identities are shaped the
way XRootD's GSI wants them:

- the keys are RSA: GSI encrypts its Diffie-Hellman parameters with the peer's key and fails on
  EC keys (`ErrExportPuK ... kXGC_certreq`);
- the client credentials are proxies (`x509up`: proxy certificate, its key, the issuing end-entity
  certificate): GSI refuses a plain certificate as `X509_USER_PROXY`, while https clients present
  the proxy chain like any client certificate;
- the host certificate's CN names the host as XRootD's GSI client expects it: it checks the CN,
  not the subjectAltName, against `[*/]<host>[/*]`, where `<host>` is the reverse lookup of the
  address, and an IPv4-mapped loopback (`::ffff:127.0.0.1`, what XrdCl connects to) has none, so
  the name is `[::ffff:127.0.0.1]`. TLS clients match the subjectAltName (localhost, 127.0.0.1).

Two identities: `nightlake-client` (`x509up`: the lake's user, who may write) and `nightlake-rse`
(`rse-x509up`: what an RSE's server presents to another when it pulls a root:// third-party copy,
allowed to read only).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

VALIDITY = dt.timedelta(days=3650)
ORGANIZATION = "nightlake local lake"
HOST_CN = "localhost/[::ffff:127.0.0.1]"
CLIENT, RSE = "nightlake-client", "nightlake-rse"
PROXIES = {CLIENT: "x509up", RSE: "rse-x509up"}
# RFC 3820 ProxyCertInfo (critical): no path length limit, policy id-ppl-inheritAll.
_PROXY_CERT_INFO = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.5.5.7.1.14"),
                                              bytes.fromhex("300c300a06082b06010505071501"))


def dn(common_name: str) -> str:
    """An identity's subject in the slash form XRootD's grid-mapfile uses."""
    return f"/O={ORGANIZATION}/CN={common_name}"


def _name(*common_names: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      *(x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + VALIDITY))


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def _proxy(common_name: str, ca: x509.Certificate, ca_key) -> bytes:
    """An end-entity certificate signed by the CA and a proxy it signs, as one `X509_USER_PROXY`
    file; the end-entity key is not kept (the proxy lives as long as the lake's other certificates)."""
    eec_key, key = _key(), _key()
    eec = (_builder(_name(common_name), ca.subject, eec_key.public_key())
           .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    serial = str(x509.random_serial_number() >> 96)
    proxy = (_builder(_name(common_name, serial), eec.subject, key.public_key())
             .add_extension(_PROXY_CERT_INFO, critical=True)
             .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
             .sign(eec_key, hashes.SHA256()))
    return _pem_cert(proxy) + _pem_key(key) + _pem_cert(eec)


def ensure(certs: Path) -> None:
    """Create the CA, the host certificate and the proxies once; later calls keep them. A lake made
    before the proxies existed (EC keys, no `rse-x509up`) gets a new set."""
    if (certs / PROXIES[RSE]).exists():
        return
    shutil.rmtree(certs, ignore_errors=True)
    certs.mkdir(parents=True)
    ca_key = _key()
    ca = (_builder(_name("nightlake local lake CA"), _name("nightlake local lake CA"), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    host_key = _key()
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    host = (_builder(_name(HOST_CN), ca.subject, host_key.public_key()).add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(certs / "ca.pem", _pem_cert(ca))
    _write(certs / "ca.key", _pem_key(ca_key), 0o600)
    _write(certs / "host.pem", _pem_cert(host))
    _write(certs / "host.key", _pem_key(host_key), 0o600)
    for common_name, file_name in PROXIES.items():
        _write(certs / file_name, _proxy(common_name, ca, ca_key), 0o600)
    hashed_ca_dir(certs / "ca.pem", certs / "cadir")


def hashed_ca_dir(ca_cert: Path, cadir: Path) -> Path:
    """A directory with the lake CA under its OpenSSL subject hash: the `X509_CERT_DIR` that gfal2
    (davix) and XRootD's GSI, on both ends, look the CA up in."""
    cadir.mkdir(parents=True, exist_ok=True)
    subject_hash = subprocess.run(["openssl", "x509", "-subject_hash", "-noout", "-in", str(ca_cert)],
                                  capture_output=True, text=True, check=True).stdout.strip()
    shutil.copy(ca_cert, cadir / f"{subject_hash}.0")
    return cadir
