"""The client's credential conventions without a lake: WLCG token discovery in its order, a token
file re-read when renewed, an expired token or proxy refused in a line that names it (never its
value), the catalog presenting the renewed token, the storage sending it as a bearer header."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from nightlake.catalog import credentials
from nightlake.catalog.client import Catalog
from nightlake.catalog.credentials import CredentialExpired, TokenSource
from nightlake.storage.https import HttpsStorage

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def jwt(exp: dt.datetime, sub: str = "nightlake") -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part({'sub': sub, 'exp': int(exp.timestamp())})}.c2lnbmF0dXJl"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "RUCIO_AUTH_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    return monkeypatch


def test_discovery_follows_the_wlcg_order(clean_env, tmp_path):
    xdg = tmp_path / "xdg" / f"bt_u{os.geteuid()}"
    xdg.write_text("from-xdg\n")
    assert TokenSource().current() == "from-xdg"
    (tmp_path / "file").write_text("from-file\n")
    clean_env.setenv("BEARER_TOKEN_FILE", str(tmp_path / "file"))
    assert TokenSource().current() == "from-file"
    clean_env.setenv("BEARER_TOKEN", "from-env")
    assert TokenSource().current() == "from-env"


def test_a_renewed_token_file_is_read_again(clean_env, tmp_path):
    path = tmp_path / "bt"
    path.write_text(jwt(NOW + dt.timedelta(minutes=5)))
    clean_env.setenv("BEARER_TOKEN_FILE", str(path))
    source = TokenSource()
    first = source.fresh(NOW)
    renewed = jwt(NOW + dt.timedelta(hours=1), sub="nightlake-renewed")
    path.write_text(renewed)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert first != renewed and source.fresh(NOW) == renewed


def test_an_expired_token_is_named_with_its_file_and_how_to_renew_never_its_value(clean_env, tmp_path):
    path = tmp_path / "bt"
    token = jwt(NOW - dt.timedelta(seconds=1))
    path.write_text(token)
    clean_env.setenv("BEARER_TOKEN_FILE", str(path))
    with pytest.raises(CredentialExpired) as stopped:
        TokenSource().fresh(NOW)
    message = stopped.value.classified.message
    assert "BEARER_TOKEN_FILE" in message and str(path) in message and "expired at" in message
    assert "write a new token" in message and token not in message


def test_no_token_anywhere_is_said_with_the_places_looked_in(clean_env, tmp_path):
    clean_env.setenv("BEARER_TOKEN_FILE", str(tmp_path / "absent"))
    assert not TokenSource().found or Path(f"/tmp/bt_u{os.geteuid()}").exists()
    assert "BEARER_TOKEN_FILE" in credentials.no_token_message()


def test_auth_type_prefers_the_environment_as_rucio_does(clean_env):
    clean_env.setenv("RUCIO_AUTH_TYPE", "oidc")
    assert credentials.auth_type() == "oidc"


def _certificate(not_after: dt.datetime) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(not_after - dt.timedelta(days=1)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_an_expired_or_missing_proxy_is_refused_before_the_run(tmp_path):
    from nightlake import BadInput

    with pytest.raises(BadInput, match="does not exist"):
        credentials.check_proxy(tmp_path / "x509up")
    (tmp_path / "x509up").write_bytes(_certificate(NOW - dt.timedelta(hours=1)))
    with pytest.raises(CredentialExpired, match="X.509 proxy"):
        credentials.check_proxy(tmp_path / "x509up", NOW)
    credentials.check_proxy(tmp_path / "x509up", NOW - dt.timedelta(hours=2))


class FakeClient:
    def __init__(self, token: str):
        self.auth_token, self.headers = token, {"X-Rucio-Auth-Token": token}


def test_the_catalog_presents_the_token_its_file_holds_now(clean_env, tmp_path):
    path = tmp_path / "bt"
    first = jwt(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
    path.write_text(first)
    clean_env.setenv("BEARER_TOKEN_FILE", str(path))
    catalog = Catalog(client=FakeClient(first))
    catalog.tokens = TokenSource()
    renewed = jwt(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), sub="renewed")
    path.write_text(renewed)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert catalog.call(lambda: catalog.client.headers["X-Rucio-Auth-Token"]) == renewed
    assert catalog.client.auth_token == renewed


def test_https_storage_sends_the_current_token_as_a_bearer_header():
    tokens = iter(["one", "two"])
    storage = HttpsStorage(ca_cert=True, token=lambda: next(tokens))
    assert storage._bearer({"Depth": "1"}) == {"Depth": "1", "Authorization": "Bearer one"}
    assert storage._bearer(None) == {"Authorization": "Bearer two"}
    assert HttpsStorage(ca_cert=True)._bearer(None) == {}


def test_an_expired_credential_met_inside_a_call_stops_it_as_it_is():
    from nightlake.catalog.retry import RetryPolicy
    from nightlake.flows.failing import Streak

    expired = CredentialExpired("the OIDC access token (the token in BEARER_TOKEN_FILE (/x))", NOW, "renew it")
    calls = []

    def upload():
        calls.append(1)
        raise expired

    with pytest.raises(CredentialExpired) as raised:
        RetryPolicy(sleep=lambda s: None).call(upload)
    assert raised.value is expired and len(calls) == 1  # not retried, not turned into a file's failure
    with pytest.raises(CredentialExpired):
        Streak().failure(expired)  # the run stops at once, like a service down past its patience
