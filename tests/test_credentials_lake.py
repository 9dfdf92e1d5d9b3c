"""Each kind of credential, end to end: the lake's X.509 proxy and an OIDC token from the lake's
identity provider each ingest and retrieve a night (the password is every other lake test's); the
catalog and the storage each refuse a wrong or missing one; an expired token stops the run with
one line and a new one resumes it; no secret reaches the terminal or the run directory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509

from conftest import NIGHTLAKE
from nightlake.lake import certs, control, idp, postgres, rucio_server
from nightlake.lake.layout import RSES, SCOPE

pytestmark = pytest.mark.lake
ONSITE = next(r for r in RSES if r.name == "ONSITE")
PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")


def _env(lake, auth: str, **extra: str) -> dict[str, str]:
    """The environment `lake env --auth AUTH` gives; with oidc, no proxy, so only the token can authorise."""
    env = {**os.environ, **control.env(lake, auth), **extra}
    if auth == "oidc":
        env.pop("X509_USER_PROXY", None)
        env["XDG_RUNTIME_DIR"] = env.get("XDG_RUNTIME_DIR_FOR_TEST", "/nonexistent")
    return env


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NIGHTLAKE, *args], capture_output=True, text=True, env=env, timeout=600)


def _night(root: Path, dataset: str, count: int = 6) -> dict[str, bytes]:
    directory = root / dataset
    directory.mkdir(parents=True)
    files = {f"{dataset}_{i:03d}.fits": os.urandom(3000 + i) for i in range(count)}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def _token_file(lake, scratch: Path, lifetime: int = 3600, **claims: str) -> Path:
    path = scratch / "bt"
    idp.write_token(path, idp.issue_token(lake, lifetime=lifetime, **claims))
    return path


def _ingest(env: dict, scratch: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run(env, "ingest", str(scratch / "src"), "--rse", "ONSITE", "--scope", SCOPE,
                "--run", str(scratch / "run"), "--quiet", *extra)


def _retrieve(env: dict, scratch: Path, dataset: str) -> subprocess.CompletedProcess:
    return _run(env, "retrieve", f"{SCOPE}:{dataset}", "--out", str(scratch / "out"),
                "--run", str(scratch / "retrieve-run"), "--quiet")


def _downloaded(scratch: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (scratch / "out" / SCOPE).iterdir()}


def _whoami(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(NIGHTLAKE).parent / "rucio"), "whoami"], capture_output=True, text=True,
                          env=env, timeout=60)


def test_the_lake_proxy_is_an_rfc3820_proxy_of_the_user_certificate(lake):
    chain = x509.load_pem_x509_certificates(lake.proxy.read_bytes())
    proxy, user = chain
    assert proxy.extensions.get_extension_for_oid(PROXY_CERT_INFO).critical
    assert proxy.issuer == user.subject
    assert proxy.subject.rdns[:-1] == user.subject.rdns  # the user's DN plus one CN of its own
    proxy.verify_directly_issued_by(user)


def test_an_x509_proxy_ingests_and_retrieves(lake, scratch):
    env = _env(lake, "x509_proxy")
    assert "root" in _whoami(env).stdout
    dataset = f"x509-{uuid.uuid4().hex[:8]}"
    files = _night(scratch / "src", dataset)
    ingested = _ingest(env, scratch)
    assert ingested.returncode == 0, ingested.stderr
    assert _retrieve(env, scratch, dataset).returncode == 0
    assert _downloaded(scratch) == files


def test_rucio_refuses_a_proxy_of_an_identity_it_does_not_know(lake, scratch):
    config = scratch / "rucio.cfg"
    config.write_text(lake.client_cfg_for("x509_proxy").read_text()  # its own token cache, not root's
                      .replace(str(lake.proxy), str(lake.certs / certs.PROXIES[certs.RSE]))
                      .replace(str(lake.root / "tokens"), str(scratch / "tokens")))
    _night(scratch / "src", f"x509-stranger-{uuid.uuid4().hex[:8]}")
    refused = _ingest(_env(lake, "x509_proxy", RUCIO_CONFIG=str(config)), scratch)
    assert refused.returncode == 2 and "authentication refused" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_an_oidc_token_ingests_and_retrieves_over_https_and_no_secret_leaks(lake, scratch):
    token_file = _token_file(lake, scratch)
    env = _env(lake, "oidc", BEARER_TOKEN_FILE=str(token_file))
    assert "root" in _whoami(env).stdout
    dataset = f"oidc-{uuid.uuid4().hex[:8]}"
    files = _night(scratch / "src", dataset)
    ingested = _ingest(env, scratch, "--scheme", "https")
    assert ingested.returncode == 0, ingested.stderr
    retrieved = _retrieve(env, scratch, dataset)
    assert retrieved.returncode == 0, retrieved.stderr
    assert _downloaded(scratch) == files
    report = _run(env, "report", str(scratch / "run"), "--out", str(scratch / "report"))
    assert report.returncode == 0, report.stderr
    secrets = [token_file.read_text().strip(), rucio_server._password(lake)]
    outputs = [ingested.stdout, ingested.stderr, retrieved.stdout, retrieved.stderr, report.stdout, report.stderr]
    written = [p.read_bytes().decode("latin-1") for d in ("run", "retrieve-run", "report")
               for p in (scratch / d).rglob("*") if p.is_file()]
    written += [p.read_bytes().decode("latin-1") for p in lake.logs.rglob("*") if p.is_file()]  # the lake's too
    for secret in secrets:
        for text in outputs + written:
            assert secret not in text and secret[-40:] not in text


def test_rucio_refuses_a_forged_or_missing_token(lake, scratch):
    good = _token_file(lake, scratch).read_text().strip()
    forged = scratch / "forged"
    idp.write_token(forged, good[:-8] + ("A" * 8 if not good.endswith("A" * 8) else "B" * 8))
    _night(scratch / "src", f"oidc-forged-{uuid.uuid4().hex[:8]}")
    refused = _ingest(_env(lake, "oidc", BEARER_TOKEN_FILE=str(forged)), scratch, "--scheme", "https")
    assert refused.returncode == 2 and "authentication refused" in refused.stderr, refused.stderr
    missing = _ingest(_env(lake, "oidc", BEARER_TOKEN_FILE=str(scratch / "none")), scratch)
    assert missing.returncode == 2 and "no bearer token was found" in missing.stderr, missing.stderr


def test_the_storage_authorises_each_path_by_the_token_scopes(lake, scratch):
    url = f"https://127.0.0.1:{lake.https_port(ONSITE)}/rucio/{SCOPE}/token-{uuid.uuid4().hex[:8]}"

    def put(token: str | None, where: str = url) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.put(where, data=b"x", headers=headers, verify=str(lake.ca_cert), timeout=30).status_code

    def token(**claims: str) -> str:
        return idp.issue_token(lake, lifetime=300, **claims)

    assert put(None) == 403
    assert put(token(scope="storage.read:/")) == 403
    assert put(token(scope=f"storage.modify:/{SCOPE}-other")) == 403
    assert put(token(audience="another-storage")) == 403
    assert put(token()) in (200, 201)
    assert put(token(), url.replace(f"/rucio/{SCOPE}/", "/rucio/elsewhere-")) == 403  # outside storage.modify:/cta
    assert requests.get(url, headers={"Authorization": f"Bearer {token(scope='storage.read:/')}"},
                        verify=str(lake.ca_cert), timeout=30).content == b"x"


def test_an_expired_token_stops_the_run_in_one_line_and_a_new_one_resumes(lake, scratch):
    token_file = _token_file(lake, scratch, lifetime=1)
    env = _env(lake, "oidc", BEARER_TOKEN_FILE=str(token_file))
    dataset = f"oidc-expired-{uuid.uuid4().hex[:8]}"
    files = _night(scratch / "src", dataset)
    time.sleep(2.5)  # past the token's lifetime (not a timed assertion: the token must be dead)
    stopped = _ingest(env, scratch, "--scheme", "https")
    assert stopped.returncode == 2, stopped.stderr
    line = stopped.stderr.strip()
    assert len(line.splitlines()) == 1 and "expired" in line and "BEARER_TOKEN_FILE" in line, line
    assert token_file.read_text().strip() not in line
    idp.write_token(token_file, idp.issue_token(lake, lifetime=3600))
    resumed = _ingest(env, scratch, "--scheme", "https")
    assert resumed.returncode == 0, resumed.stderr
    assert _retrieve(env, scratch, dataset).returncode == 0
    assert _downloaded(scratch) == files


def _rucio_tokens(lake) -> int:
    """How many distinct JWTs of the lake user's OIDC identity the Rucio server has validated."""
    from nightlake.lake.system import PG_BIN

    query = f"SELECT count(DISTINCT token) FROM tokens WHERE identity = '{idp.identity(lake)}'"
    argv = [str(PG_BIN / "psql"), "-w", "-qAt", "-h", "127.0.0.1", "-p", str(lake.pg_port), "-U", "rucio",
            "-d", "rucio", "-c", query]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": postgres.password(lake, "rucio")})
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_a_token_renewed_in_its_file_during_a_run_keeps_the_run_going(lake, scratch):
    """The token lives 4 s and is renewed every second while the run goes on, as oidc-agent would:
    the run finishes, and Rucio saw more than one of the tokens (the file was really re-read)."""
    token_file = _token_file(lake, scratch, lifetime=4)
    env = _env(lake, "oidc", BEARER_TOKEN_FILE=str(token_file))
    _night(scratch / "src", f"oidc-renewed-{uuid.uuid4().hex[:8]}", count=150)
    before = _rucio_tokens(lake)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(1):
            idp.write_token(token_file, idp.issue_token(lake, lifetime=4))

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        ran = _ingest(env, scratch, "--scheme", "https", "--workers", "1", "--batch", "10")
    finally:
        done.set()
        renewer.join()
    assert ran.returncode == 0, ran.stderr
    assert _rucio_tokens(lake) - before >= 2


def _uploaded(run: Path) -> int:
    """Files past their upload in a run's journal (read-only; 0 before the journal exists)."""
    import sqlite3

    if not (run / "journal.sqlite").exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM files WHERE state NOT IN ('planned', 'uploading')").fetchone()[0]
    except sqlite3.OperationalError:  # being created
        return 0


def test_a_token_that_expires_during_a_run_stops_it_and_a_new_one_resumes(lake, scratch):
    """Once the first files are up, the token file is given a token that has already expired (the
    renewal that did not come): the run stops in one line, no file failed, and a new token resumes it."""
    token_file = _token_file(lake, scratch)
    dead = idp.issue_token(lake, lifetime=1)
    env = _env(lake, "oidc", BEARER_TOKEN_FILE=str(token_file))
    dataset = f"oidc-midrun-{uuid.uuid4().hex[:8]}"
    files = _night(scratch / "src", dataset, count=200)
    time.sleep(1.5)  # `dead` is past its lifetime before the run starts
    run = subprocess.Popen([NIGHTLAKE, "ingest", str(scratch / "src"), "--rse", "ONSITE", "--scope", SCOPE,
                            "--run", str(scratch / "run"), "--quiet", "--scheme", "https", "--workers", "1",
                            "--batch", "10"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while run.poll() is None and _uploaded(scratch / "run") == 0:
        time.sleep(0.05)
    idp.write_token(token_file, dead)
    _, stderr = run.communicate(timeout=600)
    if run.returncode == 0:
        pytest.skip("the run ended before it read the token file again")
    assert run.returncode == 2, stderr
    line = stderr.strip()
    assert len(line.splitlines()) == 1 and "expired" in line and str(token_file) in line, line
    assert dead not in line
    status = _run(env, "status", str(scratch / "run"), "--json")
    assert status.returncode == 0, status.stderr
    journaled = json.loads(status.stdout)["files"]
    assert journaled["total"] == len(files) and journaled["failed"] == 0 and journaled["done"] < len(files)
    idp.write_token(token_file, idp.issue_token(lake, lifetime=3600))
    resumed = _ingest(env, scratch, "--scheme", "https")
    assert resumed.returncode == 0, resumed.stderr
    assert _retrieve(env, scratch, dataset).returncode == 0
    assert _downloaded(scratch) == files
