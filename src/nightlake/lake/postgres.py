"""The catalog's PostgreSQL 15: a cluster made with initdb inside the lake directory.

PostgreSQL refuses to run as root, so when the lake is started by root the cluster belongs to the
unprivileged `postgres` user and the server is started directly as that user (no wrapper process:
the PID we record is the postmaster's own). It listens on 127.0.0.1 only, trusts local connections
(nothing but loopback can reach it) and runs without fsync: a throw-away catalog for demos and tests.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from nightlake import BadInput
from nightlake.lake import processes
from nightlake.lake.layout import HOST, Layout
from nightlake.lake.system import PG_BIN, service_user

DB_NAME = DB_USER = "rucio"


def run_as() -> str | None:
    """The OS user PostgreSQL runs as: `postgres` when we are root, else ourselves."""
    return service_user("postgres", "postgresql-15")


def url(layout: Layout) -> str:
    """The Rucio server's database URL: the `rucio` role with its password (only in server.cfg,
    which only the lake's owner can read)."""
    return f"postgresql+psycopg://{DB_USER}:{password(layout, DB_USER)}@{HOST}:{layout.pg_port}/{DB_NAME}"


def password(layout: Layout, role: str) -> str:
    """The role's password, made once per lake and kept in a file only the lake's owner reads."""
    secret = layout.etc / f"pg-{role}.password"
    if not secret.exists():
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(24))
    return secret.read_text().strip()


def socket_dir(layout: Layout) -> Path:
    """PostgreSQL's Unix socket, in a directory only its own user may enter."""
    return layout.pgdata.parent / "socket"


def initdb(layout: Layout) -> bool:
    """Create the cluster once; True when it was created now."""
    if (layout.pgdata / "PG_VERSION").exists():
        return False
    user = run_as()
    layout.pgdata.parent.mkdir(parents=True, exist_ok=True)
    pwfile = layout.pgdata.parent / "superuser.pw"  # initdb reads it, as the postgres user
    pwfile.touch(mode=0o600)
    pwfile.write_text(password(layout, "postgres") + "\n")
    if user:
        shutil.chown(layout.pgdata.parent, user, user)
        shutil.chown(pwfile, user, user)
    try:
        result = subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(layout.pgdata), "-U", "postgres", f"--pwfile={pwfile}",
             "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
            user=user, group=user, extra_groups=[] if user else None, cwd=layout.pgdata.parent,
            capture_output=True, text=True)
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode:
        raise BadInput(f"initdb failed: {_last_line(result.stderr or result.stdout)}")
    return True


def start(layout: Layout) -> processes.Proc:
    """Start the postmaster and wait until it accepts connections."""
    log = layout.logs / "postgresql.log"
    _private_socket_dir(layout)
    argv = [str(PG_BIN / "postgres"), "-D", str(layout.pgdata),
            "-c", f"listen_addresses={HOST}", "-c", f"port={layout.pg_port}",
            "-c", f"unix_socket_directories={socket_dir(layout)}", "-c", "unix_socket_permissions=0700",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200"]
    user = run_as()
    return processes.serve(layout.pids, "postgresql", argv, log, cwd=layout.pgdata.parent, user=user,
                           ready=lambda: _ready(layout), what="PostgreSQL", timeout=30, why=_last_line)


def _private_socket_dir(layout: Layout) -> None:
    directory = socket_dir(layout)
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    if user := run_as():
        shutil.chown(directory, user, user)


def _ready(layout: Layout) -> bool:
    result = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", HOST, "-p", str(layout.pg_port)],
                            capture_output=True)
    return result.returncode == 0


def create_database(layout: Layout) -> None:
    """Create the `rucio` role and database (a fresh, empty catalog)."""
    sql = [f"DROP DATABASE IF EXISTS {DB_NAME}", f"DROP ROLE IF EXISTS {DB_USER}",
           f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{password(layout, DB_USER)}'",
           f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}"]
    argv = [str(PG_BIN / "psql"), "-h", HOST, "-p", str(layout.pg_port), "-U", "postgres",
            "-v", "ON_ERROR_STOP=1", "-qAt"]
    for statement in sql:
        argv += ["-c", statement]
    result = subprocess.run(argv, capture_output=True, text=True,
                            env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning",
                                 "PGPASSWORD": password(layout, "postgres")})
    if result.returncode:
        raise BadInput(f"could not create the catalog database: {_last_line(result.stderr)}")


def healthy(layout: Layout) -> bool:
    return _ready(layout)


def _last_line(text: str) -> str:
    """The line that says why: PostgreSQL logs the cause (e.g. an invalid setting) just before FATAL."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "FATAL" in line or "PANIC" in line:
            return " | ".join(lines[max(0, i - 1):i + 1])
    errors = [line for line in lines if "ERROR" in line or "error" in line.lower()]
    return (errors or lines or ["(no output)"])[-1]
