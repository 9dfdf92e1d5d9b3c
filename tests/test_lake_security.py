"""The lake admits only its own authenticated clients: the catalog's database asks for a password
over TCP and keeps its socket private, Rucio's root account has none of Rucio's default
identities (whose keys are public; an SSH login as root is refused), only the lake's own password, proxy DN and
OIDC identity, and the RSEs let only
the lake's client certificate write or delete (over https and root://), while `lake status` says
where each server really listens."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ingest_helpers import nightlake
from nightlake.lake import certs, control, listening, postgres
from nightlake.lake.layout import RSES
from nightlake.lake.system import PG_BIN

pytestmark = pytest.mark.lake


def _psql(lake, *args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    argv = [str(PG_BIN / "psql"), "-w", "-qAt", "-d", "rucio", *args, "-c", "SELECT count(*) FROM tokens"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(argv, capture_output=True, text=True, env={**clean, **(env or {})}, user=user, timeout=30)


def test_the_catalog_database_refuses_a_client_without_the_password(lake):
    for role in ("postgres", "rucio"):
        refused = _psql(lake, "-h", "127.0.0.1", "-p", str(lake.pg_port), "-U", role)
        assert refused.returncode != 0 and "password" in refused.stderr, refused.stderr
    wrong = _psql(lake, "-h", "127.0.0.1", "-p", str(lake.pg_port), "-U", "rucio", env={"PGPASSWORD": "guess"})
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    allowed = _psql(lake, "-h", "127.0.0.1", "-p", str(lake.pg_port), "-U", "rucio",
                    env={"PGPASSWORD": postgres.password(lake, "rucio")})
    assert allowed.returncode == 0, allowed.stderr  # the server's own role, with its password, is let in


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_local_user_cannot_reach_the_database_socket(lake):
    socket = postgres.socket_dir(lake)
    assert (socket.stat().st_mode & 0o777) == 0o700
    assert pwd.getpwuid(socket.stat().st_uid).pw_name == postgres.run_as()
    stranger = _psql(lake, "-h", str(socket), "-p", str(lake.pg_port), "-U", "postgres", user="nobody")
    assert stranger.returncode != 0 and ("Permission denied" in stranger.stderr or "No such file" in stranger.stderr)


def test_root_has_only_the_lakes_own_identities(lake):
    rucio = str(Path(sys.executable).parent / "rucio-admin")
    listed = subprocess.run([rucio, "account", "list-identities", "root"], capture_output=True, text=True,
                            env=os.environ, timeout=60)
    assert listed.returncode == 0, listed.stderr
    types = {line.split("type:")[1].split(",")[0].strip() for line in listed.stdout.splitlines() if "type:" in line}
    assert types == {"USERPASS", "X509", "OIDC"}, listed.stdout  # no SSH or GSS identity with a public key
    assert certs.dn(certs.CLIENT) in listed.stdout  # the lake's own proxy's DN, its key never published
    assert f"ISS={lake.idp_url}" in listed.stdout
    assert "ssh-rsa" not in listed.stdout and "ddmlab" not in listed.stdout.lower()


# Run in the server's venv, which has paramiko (Rucio's server verifies SSH logins with it) and
# Rucio's own signing function; the client side of nightlake needs neither.
KEYGEN = ("import io, paramiko; k = paramiko.RSAKey.generate(2048); s = io.StringIO(); k.write_private_key(s); "
          "print(s.getvalue(), end=''); print('ssh-rsa ' + k.get_base64())")
SIGN = "import sys; from rucio.common.utils import ssh_sign; print(ssh_sign(open(sys.argv[1]).read(), sys.argv[2]))"


def _server_python(lake, code: str, *args: str) -> str:
    return subprocess.run([str(lake.server_venv / "bin" / "python"), "-c", code, *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def _ssh_login(lake, account: str, key: Path) -> int:
    """Rucio's SSH login as its client makes it: a challenge token, signed with the key; the status."""
    import requests

    url, ca = lake.rucio_url, str(lake.ca_cert)
    challenge = requests.get(f"{url}/auth/ssh_challenge_token", headers={"X-Rucio-Account": account},
                             verify=ca, timeout=30)
    assert challenge.status_code == 200, challenge.text
    signature = _server_python(lake, SIGN, str(key), challenge.headers["X-Rucio-SSH-Challenge-Token"]).strip()
    login = requests.get(f"{url}/auth/ssh", headers={"X-Rucio-Account": account, "X-Rucio-SSH-Signature": signature},
                         verify=ca, timeout=30)
    assert login.status_code != 200 or login.headers.get("X-Rucio-Auth-Token")
    return login.status_code


def test_an_ssh_login_as_root_is_refused_whatever_the_key(lake, tmp_path):
    """Rucio checks an SSH signature only against the account's SSH identities, and root has none
    (the test above), so no key logs in as root: not Rucio's default one (its private half is public),
    not a key that does log in elsewhere. The check is live: that key logs in to the account it is
    registered to, and the same login to root is refused."""
    from rucio.client import Client

    private, public = _server_python(lake, KEYGEN).rsplit("-----\n", 1)
    key = tmp_path / "key"
    key.write_text(private + "-----\n")
    key.chmod(0o600)
    probe = f"sshprobe{uuid.uuid4().hex[:8]}"
    client = Client()
    client.add_account(probe, "USER", f"{probe}@localhost")
    client.add_identity(probe, public.strip(), "SSH", email=f"{probe}@localhost")
    assert _ssh_login(lake, probe, key) == 200
    assert _ssh_login(lake, "root", key) == 401


def _https(lake, method: str, path: str, cert: str | None = None, data: bytes | None = None):
    import requests

    url = f"https://127.0.0.1:{lake.https_port(RSES[0])}/rucio/security/{path}"
    return requests.request(method, url, data=data, verify=str(lake.ca_cert), cert=cert, timeout=30)


def test_an_rse_refuses_https_writes_and_deletes_without_the_lake_certificate(lake):
    name = f"{uuid.uuid4().hex}.dat"
    assert _https(lake, "PUT", name, data=b"stranger").status_code == 403
    assert _https(lake, "PUT", name, cert=str(lake.proxy), data=b"lake").status_code in (200, 201)
    assert _https(lake, "DELETE", name).status_code == 403
    assert _https(lake, "GET", name).content == b"lake"  # still there; anonymous reads serve HTTP-TPC pulls
    assert _https(lake, "DELETE", name, cert=str(lake.proxy)).status_code in (200, 204)


def test_an_rse_lets_the_rse_identity_read_but_not_write(lake):
    """The certificate RSE servers present to each other for root:// TPC is of the lake CA, and
    still may not write: authorisation, not only authentication."""
    refused = _https(lake, "PUT", f"{uuid.uuid4().hex}.dat", cert=str(lake.certs / certs.PROXIES[certs.RSE]),
                     data=b"rse")
    assert refused.status_code == 403


def _root_write(lake, env: dict) -> subprocess.CompletedProcess:
    """A root:// write from a fresh process (XrdCl reads its credentials once per process)."""
    code = ("import sys\nfrom XRootD import client\nfrom XRootD.client import flags\n"
            "f = client.File()\nstatus, _ = f.open(sys.argv[1], flags.OpenFlags.NEW | flags.OpenFlags.MAKEPATH)\n"
            "print(status.message)\nsys.exit(0 if status.ok else 1)\n")
    pfn = f"root://127.0.0.1:{lake.root_port(RSES[0])}//rucio/security/{uuid.uuid4().hex}.dat"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("X509_")}
    return subprocess.run([sys.executable, "-c", code, pfn], capture_output=True, text=True,
                          env={**clean, "HOME": str(lake.root / "nobody"), **env}, timeout=60)


def test_an_rse_refuses_a_root_write_without_credentials(lake):
    refused = _root_write(lake, {"X509_CERT_DIR": str(lake.ca_dir)})
    assert refused.returncode == 1 and "Auth failed" in refused.stdout, refused.stdout + refused.stderr


def test_an_rse_refuses_a_root_write_by_the_rse_identity_and_takes_the_lakes_client(lake):
    rse = _root_write(lake, {"X509_CERT_DIR": str(lake.ca_dir),
                             "X509_USER_PROXY": str(lake.certs / certs.PROXIES[certs.RSE])})
    assert rse.returncode == 1 and "permission denied" in rse.stdout, rse.stdout + rse.stderr
    client = _root_write(lake, {"X509_CERT_DIR": str(lake.ca_dir), "X509_USER_PROXY": str(lake.proxy)})
    assert client.returncode == 0, client.stdout + client.stderr


def test_lake_status_shows_where_each_server_listens(lake):
    shown = nightlake("lake", "status", "--dir", str(lake.root)).stdout
    rows = {row.name: row for row in control.status(lake)}
    assert rows["postgresql"].bound == (f"127.0.0.1:{lake.pg_port}",)
    assert rows["rucio-server"].bound == (f"127.0.0.1:{lake.rucio_port}",)
    for rse in RSES:  # XRootD 5.5.3 cannot bind an address: it listens everywhere, admits loopback only
        bound = rows[f"xrootd-{rse.name}"].bound
        assert bound == tuple(listening.bound(lake.root_port(rse)) + listening.bound(lake.https_port(rse)))
        assert f"[::]:{lake.root_port(rse)}" in bound
    assert "listens on" in shown and f"127.0.0.1:{lake.pg_port}" in shown
