"""The catalog: a real Rucio server (41.5.1) in its own venv, its schema, and its daemons.

The `rucio` server package and `rucio-clients` install the same Python package, so the server
lives in a venv of its own and is only ever run as separate processes. The server reads
`server.cfg` (with a `[database]` section); clients read `rucio.cfg` (without one: a client config
with `[database]` would switch `rucio.rse` into server mode).
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from nightlake import BadInput
from nightlake.lake import idp, postgres, processes
from nightlake.lake.layout import RUCIO_VERSION, Layout

GATEWAY = Path(__file__).with_name("rucio_gateway.py")
REQUIREMENTS = [f"rucio[postgresql]=={RUCIO_VERSION}", "gunicorn==27.0.1"]
# CTAO's policy package (the version CTAO's BDMS 0.11 clients require), for a lake made with it.
POLICY_PACKAGES = {"generic": [], "ctao": ["ctao-bdms-rucio-policy==0.6.0"]}
ACCOUNT = "root"
IDENTITY = "nightlake"
# Daemons that keep the lake's promises: dataset rule locks, rule lifetimes, deletion, and
# replication: the conveyor submits requests to the RSEs' `fts` (the lake's transfer service), polls
# it and finishes what it reports; the repairer re-evaluates STUCK rules (a chained rule whose source
# replicas were not there yet). Sleep times are short so a rule is OK in seconds. A sleep time of 2 s
# (not 1) also bounds how long a killed conveyor daemon's heartbeat counts: Rucio ignores heartbeats
# older than 10 x (sleep - 1) s, or 600 s when that is 0, and until then splits the work with the dead.
DAEMONS = {
    "judge-evaluator": ["--threads", "1", "--sleep-time", "2", "--did-limit", "1000"],
    "judge-cleaner": ["--threads", "1", "--sleep-time", "10"],
    "reaper": ["--threads", "1", "--sleep-time", "10", "--greedy", "--delay-seconds", "30"],
    "conveyor-submitter": ["--sleep-time", "2", "--bulk", "1000", "--group-bulk", "200"],
    "conveyor-poller": ["--sleep-time", "2"],  # run by poller_loop.py: see there why
    "conveyor-finisher": ["--sleep-time", "2"],
    "judge-repairer": ["--threads", "1", "--sleep-time", "5"],
}


def venv_python(layout: Layout) -> Path:
    return layout.server_venv / "bin" / "python"


def requirements(layout: Layout) -> list[str]:
    """What the lake's server venv holds: Rucio, gunicorn, and the policy package of the lake's policy."""
    return REQUIREMENTS + POLICY_PACKAGES[layout.policy]


def installed(layout: Layout) -> bool:
    stamp = layout.server_venv / "nightlake-requirements.txt"
    return stamp.exists() and stamp.read_text().split() == requirements(layout)


def install(layout: Layout, echo=print) -> None:
    """Create the server venv once (about 30 s); later calls return at once."""
    if installed(layout):
        return
    echo(f"installing the Rucio {RUCIO_VERSION} server ({layout.policy} policy) into {layout.server_venv} "
         f"(first time only)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(layout.server_venv)], check=True)
    pip = [str(layout.server_venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    result = subprocess.run(pip + requirements(layout), capture_output=True, text=True)
    if result.returncode:
        raise BadInput(f"could not install the Rucio server: {result.stderr.strip().splitlines()[-1]}")
    (layout.server_venv / "nightlake-requirements.txt").write_text("\n".join(requirements(layout)) + "\n")


def write_configs(layout: Layout) -> None:
    """Render server.cfg, alembic.ini and the client rucio.cfg; the password is made once per lake."""
    layout.etc.mkdir(parents=True, exist_ok=True)
    password = _password(layout)
    site_packages = subprocess.run(
        [str(venv_python(layout)), "-c", "import os, rucio; print(os.path.dirname(rucio.__file__))"],
        capture_output=True, text=True, check=True).stdout.strip()
    db = postgres.url(layout)
    _write(layout.alembic_ini, ALEMBIC.format(script=f"{site_packages}/db/sqla/migrate_repo", db=db))
    secrets_file = layout.etc / "idpsecrets.json"
    _write(secrets_file, json.dumps(idp.idpsecrets(layout), indent=1))
    _write(layout.server_cfg, SERVER.format(logs=layout.logs, db=db, identity=IDENTITY, password=password,
                                            alembic=layout.alembic_ini, proxy=layout.proxy,
                                            policy=POLICY[layout.policy])
           + OIDC.format(idpsecrets=secrets_file))
    for auth, extra in CLIENT_AUTH.items():
        text = CLIENT.format(url=layout.rucio_url, account=ACCOUNT, ca=layout.ca_cert, auth=auth,
                             token=layout.root / "tokens") + \
            extra.format(identity=IDENTITY, password=password, proxy=layout.proxy, issuer=layout.idp_url) + \
            (CLIENT_POLICY if layout.ctao else "")
        _write(layout.client_cfg_for(auth), text)


def _password(layout: Layout) -> str:
    secret = layout.etc / "password"
    if not secret.exists():
        _write(secret, secrets.token_urlsafe(18))
    return secret.read_text().strip()


def _write(path: Path, text: str) -> None:
    """Configs hold the lake password: readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def server_env(layout: Layout) -> dict:
    """The server's and daemons' environment: this lake's config, proxy and CA (never an inherited
    one); REQUESTS_CA_BUNDLE so that the server's OIDC client trusts the lake's identity provider;
    under CTAO's policy, the front end merging slashes (rucio_gateway)."""
    return {**os.environ, "RUCIO_CONFIG": str(layout.server_cfg), "X509_USER_PROXY": str(layout.proxy),
            "X509_CERT_DIR": str(layout.ca_dir), "REQUESTS_CA_BUNDLE": str(layout.ca_cert),
            "NIGHTLAKE_CLIENT_CA": str(layout.ca_cert), "NIGHTLAKE_MERGE_SLASHES": "1" if layout.ctao else "0",
            "PATH": f"{layout.server_venv / 'bin'}:{os.environ.get('PATH', '')}"}


def bootstrap(layout: Layout) -> None:
    """Schema, alembic stamp, VO `def` and the root account with its userpass identity."""
    code = ("from rucio.db.sqla.util import build_database, create_base_vo, create_root_account\n"
            "build_database(); create_base_vo(); create_root_account()\n")
    log = layout.logs / "bootstrap.log"
    with open(log, "w") as out:
        result = subprocess.run([str(venv_python(layout)), "-c", code], env=server_env(layout),
                                stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        raise BadInput(f"Rucio schema bootstrap failed: {log.read_text().strip().splitlines()[-1]} (log: {log})")


def start_server(layout: Layout, workers: int = 2, threads: int = 4) -> processes.Proc:
    """gunicorn serving the REST API over TLS on 127.0.0.1, with an access log (calls are counted
    from it), behind `rucio_gateway` (an optional client certificate, for Rucio's x509 login)."""
    argv = [str(layout.server_venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{layout.rucio_port}",
            "--workers", str(workers), "--threads", str(threads), "--timeout", "300", "--no-control-socket",
            "--certfile", str(layout.certs / "host.pem"), "--keyfile", str(layout.certs / "host.key"),
            "--access-logfile", str(layout.access_log), "--error-logfile", str(layout.logs / "rucio-server.log"),
            "--config", str(GATEWAY), "--pythonpath", str(GATEWAY.parent), "rucio_gateway:application"]
    return processes.serve(layout.pids, "rucio-server", argv, layout.logs / "rucio-server.out",
                           env=server_env(layout), cwd=layout.root, errors=layout.logs / "rucio-server.log",
                           ready=lambda: healthy(layout), what="the Rucio server (/ping)", timeout=60, interval=0.2)


def ping(layout: Layout) -> str | None:
    """The server's version from /ping, verified against the lake CA; None when it does not answer."""
    context = ssl.create_default_context(cafile=str(layout.ca_cert))
    try:
        with urllib.request.urlopen(f"{layout.rucio_url}/ping", context=context, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


def healthy(layout: Layout) -> bool:
    return ping(layout) is not None


def daemon_argv(layout: Layout, name: str) -> list[str]:
    """The stock `rucio-NAME` daemon; the poller as run-once passes in a loop (poller_loop.py)."""
    if name == "conveyor-poller":
        return [str(venv_python(layout)), str(Path(__file__).with_name("poller_loop.py")), *DAEMONS[name]]
    return [str(layout.server_venv / "bin" / f"rucio-{name}"), *DAEMONS[name]]


def start_daemon(layout: Layout, name: str) -> processes.Proc:
    argv = daemon_argv(layout, name)
    return processes.start(layout.pids, name, argv, layout.logs / f"{name}.log",
                           env=server_env(layout), cwd=layout.root)


SERVER = """\
[common]
logdir = {logs}
loglevel = WARNING

[database]
default = {db}
pool_size = 10
max_overflow = 20
echo = 0

[bootstrap]
userpass_identity = {identity}
userpass_pwd = {password}
userpass_email = {identity}@localhost
# Rucio's default x509, GSS and SSH identities of root (their keys are public): none.
x509_identity =
gss_identity =
ssh_identity =

[alembic]
cfg = {alembic}

{policy}
[monitor]
enable_metrics = False

# Rucio's stock FTS3 transfertool: it presents `usercert` (certificate and key in one PEM) to the
# RSEs' `fts`; it does not verify the FTS host (fts3.py hard-codes verify=False).
[conveyor]
transfertool = fts3
scheme = https,root
usercert = {proxy}

# No multihop: the lake's RSEs copy directly (distances), and the default expression
# `available_for_multihop=true`, matching no RSE, makes the submitter warn every pass.
[transfers]
multihop_rse_expression =

# judge-repairer leaves alone STUCK rules updated in the last `updated_at_delta` seconds (1800 by
# default): a chained rule, STUCK until its source copy exists, would wait half an hour.
[repairer]
updated_at_delta = 10
"""

# Rucio's own generic policy, or CTAO's policy package: its schema (DID names `/<vo>/<scope>/...`,
# at most 250 characters), its scope extraction from the name and its identity lfn2pfn (the PFN is
# the RSE's prefix and the name: the on-site RSE is path-based).
POLICY = {
    "generic": "[policy]\npermission = generic\nschema = generic\nlfn2pfn_algorithm_default = hash\n",
    "ctao": "[policy]\npackage = bdms_rucio_policy\npermission = generic\nextract_scope = ctao_bdms\n"
            "lfn2pfn_algorithm_default = ctao_bdms\n",
}

# A CTAO client loads the same package (nightlake's `ctao` extra): the stock CLI then takes a bare
# `/ctao/acada/...` name and computes PFNs as the server does.
CLIENT_POLICY = """
[policy]
package = bdms_rucio_policy
extract_scope = ctao_bdms
lfn2pfn_algorithm_default = ctao_bdms
"""

CLIENT = """\
[common]
loglevel = WARNING

[client]
rucio_host = {url}
auth_host = {url}
account = {account}
ca_cert = {ca}
request_retries = 3
auth_token_file_path = {token}/{auth}/auth_token_for_account_{account}
auth_type = {auth}
"""
# What each auth type adds to the client config (Rucio's own option names). oidc: the bearer token
# itself is found by WLCG discovery (BEARER_TOKEN_FILE, ...), as Rucio's client does.
CLIENT_AUTH = {
    "userpass": "username = {identity}\npassword = {password}\n",
    "x509_proxy": "client_x509_proxy = {proxy}\n",
    "oidc": "oidc_issuer = {issuer}\noidc_audience = rucio\n",
}

# Rucio's server accepts the lake's identity provider's JWTs: audience `rucio`, scope `openid profile`.
OIDC = """
[oidc]
idpsecrets = {idpsecrets}
admin_issuer = lake
expected_audience = rucio
expected_scope = openid profile
"""

ALEMBIC = """\
[alembic]
script_location = {script}
sqlalchemy.url = {db}

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""
