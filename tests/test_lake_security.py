"""The lake admits only its own authenticated clients: the catalog's database asks for a password
over TCP and keeps its socket private, and Rucio's root account has none of Rucio's default
identities (whose keys are public), only the lake's own password identity."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from nightlake.lake import postgres
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


def test_root_has_only_the_lakes_own_password_identity(lake):
    rucio = str(Path(sys.executable).parent / "rucio-admin")
    listed = subprocess.run([rucio, "account", "list-identities", "root"], capture_output=True, text=True,
                            env=os.environ, timeout=60)
    assert listed.returncode == 0, listed.stderr
    types = {line.split("type:")[1].split(",")[0].strip() for line in listed.stdout.splitlines() if "type:" in line}
    assert types == {"USERPASS"}, listed.stdout  # no SSH, X509 or GSS identity with a public key
    assert "ssh-rsa" not in listed.stdout and "ddmlab" not in listed.stdout.lower()
