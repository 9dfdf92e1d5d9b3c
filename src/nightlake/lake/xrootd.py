"""Storage: one XRootD server per RSE, serving root:// and https (WebDAV) on the same files.

TLS is configured because XrdHttp only loads its extension handlers (HTTP-TPC) with it, and adler32
is enabled so that `Want-Digest: adler32` and `xrdfs query checksum` answer, for up to 64 files at
once (XRootD's default of 4 makes the fifth concurrent request wait 30 s). `ofs.tpc` turns on
root:// third-party copy (without it a TPC open fails with `[3013] ... tpc not supported`): the
destination server pulls with its own `xrdcp --server`, up to 8 at once.

Who may do what: clients authenticate with the lake's certificates (`certs.py`): over https with
the TLS client certificate, over root:// with GSI (`sec.protbind * only gsi`: no login without it),
and both map the certificate's DN to a name through one grid-mapfile (`-gmapopt:2`: a DN it does not
list cannot log in over root://). `ofs.authorize` checks every request against the authorisation
database: the lake's client may do everything under /rucio; anyone else, the RSE servers pulling a
root:// copy and anonymous https clients, may only list and read: HTTP-TPC in XRootD 5.5 pulls
without a credential (gfal2 sends `Credential: none`: the transfer service has no token of its
own), so the source must serve anonymous reads for replication over https to work. Over https a
WLCG bearer token from the lake's identity provider authorises what its scopes say
(`libXrdAccSciTokens`, before the authorisation database); root:// takes GSI only.

XRootD 5.5.3 binds every interface (`*` or `::`) and has no bind-address option (`xrd.port` takes a
port only, `xrd.network` no address), so `xrd.allow host` admits connections from loopback only;
`lake status` shows the address the server actually listens on.
When started by root it runs as the `xrootd` user (`-R`), which owns the storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import sqlite3
import time
from pathlib import Path

from nightlake.lake import certs, idp, processes
from nightlake.lake.layout import CTAO_SCOPES, SCOPE, Layout, RSESpec
from nightlake.lake.system import service_user

EXPORT = "/rucio"

CONFIG = """\
all.export {export}{export_options}
oss.localroot {localroot}
all.adminpath {admin}
all.pidpath {run}
xrd.port {root_port}
xrootd.chksum max 64 adler32
xrd.protocol http:{https_port} libXrdHttp.so
http.exthandler xrdtpc libXrdHttpTPC.so
ofs.tpc ttl 60 120 xfr 8 pgm /usr/bin/xrdcp --server
xrd.tls {tls}/host.pem {tls}/host.key
xrd.tlsca certdir {tls}/cadir
xrd.allow host localhost
xrd.allow host 127.0.0.1
xrootd.seclib libXrdSec.so
sec.protocol gsi -certdir:{tls}/cadir -cert:{tls}/host.pem -key:{tls}/host.key -gridmap:{home}/gridmap -gmapopt:2 -crl:0 -dlgpxy:0
sec.protbind * only gsi
http.gridmap {home}/gridmap
ofs.authorize
acc.authdb {home}/authdb
ofs.authlib ++ libXrdAccSciTokens.so config={home}/scitokens.cfg
http.header2cgi Authorization authz
{fault}"""

# The names the grid-mapfile gives the lake's identities, and what each may do under the export.
USERS = {certs.CLIENT: "nightlake", certs.RSE: "nightlake-rse"}
AUTHDB = f"""\
u {USERS[certs.CLIENT]} {EXPORT} a
u * {EXPORT} lr
"""

# WLCG tokens from the lake's identity provider: `storage.read:/P` / `storage.modify:/P` authorise
# that path below the export; a request with no token, or one its token does not cover, is left to
# the authorisation database above (`onmissing = passthrough`).
SCITOKENS = """\
[Global]
audience = {audience}
onmissing = passthrough

[Issuer lake]
issuer = {issuer}
base_path = {export}
"""

# What an RSE's fault (faults.py) adds to its config: the export option, and further directives.
FAULT_CONFIG = {
    "readonly": (" r/o", ""),
    "slow": ("", "xrootd.fslib throttle default\nthrottle.throttle data 262144\n"),
}


def storage_area(layout: Layout, rse: RSESpec, scope: str) -> Path:
    """Where a scope's files of an identity-lfn2pfn RSE (ONSITE-DAQ) are on local disk: the
    directory an on-site writer writes to and `nightlake daemon` watches."""
    return layout.rse_data(rse) / EXPORT.strip("/") / scope


def _scope_areas(layout: Layout, rse: RSESpec) -> list[Path]:
    """An identity-lfn2pfn RSE's scope directories, made by the lake (owned by its server): an
    on-site writer makes its own directories below them, and the server must still be able to
    write beside those (a stock upload to the RSE)."""
    if rse.attributes.get("lfn2pfn_algorithm") != "identity":
        return []
    return [storage_area(layout, rse, scope) for scope in (CTAO_SCOPES if layout.ctao else (SCOPE,))]


def run_as() -> str | None:
    """`xrootd` when we are root (the server drops privileges to it), else ourselves."""
    return service_user("xrootd", "xrootd-server")


def prepare(layout: Layout, rse: RSESpec, fault: str | None = None) -> None:
    """Directories, TLS material and config of one RSE's server (with its fault's directives, if
    any); the export root must exist because Rucio's WebDAV client checks the prefix before the
    first upload."""
    home = layout.rse_dir(rse)
    for sub in ("admin", "run", "tls", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (layout.rse_data(rse) / EXPORT.strip("/")).mkdir(parents=True, exist_ok=True)
    areas = _scope_areas(layout, rse)
    for area in areas:
        area.mkdir(parents=True, exist_ok=True)
    _copy_credentials(layout, home / "tls")
    (home / "gridmap").write_text("".join(f'"{certs.dn(cn)}" {name}\n' for cn, name in USERS.items()))
    (home / "authdb").write_text("" if fault == "denied" else AUTHDB)  # empty: no privileges for anyone
    (home / "scitokens.cfg").write_text(SCITOKENS.format(audience=idp.STORAGE_AUDIENCE, issuer=layout.idp_url,
                                                         export=EXPORT))
    _trust_issuer(layout, home / "cache")
    export_options, directives = FAULT_CONFIG.get(fault, ("", ""))
    (home / "xrootd.cfg").write_text(CONFIG.format(
        export=EXPORT, export_options=export_options, localroot=layout.rse_data(rse), admin=home / "admin",
        run=home / "run", root_port=layout.root_port(rse), https_port=layout.https_port(rse), tls=home / "tls",
        home=home, fault=directives))
    if user := run_as():
        uid = pwd.getpwnam(user).pw_uid
        for path in (home, home / "admin", home / "run", home / "tls", *(home / "tls").rglob("*"),
                     *(home / "cache").rglob("*"), home / "cache", layout.rse_data(rse), layout.rse_data(rse) / EXPORT.strip("/"),
                     *areas):
            if path.stat().st_uid != uid:  # a chown on a `full` RSE's overlay would need space
                shutil.chown(path, user, user)


def _trust_issuer(layout: Layout, cache: Path) -> None:
    """The issuer's signing keys, put where the token plugin's library (scitokens-cpp) caches them:
    it fetches them over https with libcurl's system CA store, which does not hold the lake CA, and
    has no option for another in 0.7. The keys are fetched here, verified against the lake CA."""
    now = int(time.time())
    keys = json.dumps({"jwks": idp.jwks(layout), "next_update": now + 3600 * 24 * 365,
                       "expires": now + 3600 * 24 * 3650})
    (cache / "scitokens").mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(cache / "scitokens" / "scitokens_cpp.sqllite")) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS keycache (issuer text UNIQUE PRIMARY KEY NOT NULL,keys text NOT NULL)")
        db.execute("INSERT OR REPLACE INTO keycache VALUES (?, ?)", (layout.idp_url, keys))


def _copy_credentials(layout: Layout, tls) -> None:
    """The server's own copies (its user must read them, keys for it only): the host certificate,
    the hashed CA directory, and the RSE identity its `xrdcp --server` presents to a TPC source."""
    for source, name, mode in ((layout.certs / "host.pem", "host.pem", 0o644),
                               (layout.certs / "host.key", "host.key", 0o400),
                               (layout.certs / certs.PROXIES[certs.RSE], "x509up", 0o400)):
        (tls / name).unlink(missing_ok=True)  # a read-only copy of an earlier start
        shutil.copy(source, tls / name)
        os.chmod(tls / name, mode)
    shutil.rmtree(tls / "cadir", ignore_errors=True)
    shutil.copytree(layout.ca_dir, tls / "cadir")


# XRootD's section banners (`++++++ ... started.`, `------ ... initialization failed.`): never the
# reason it gives for not starting, which is the line before them.
BANNERS = ("++++++", "------")


def start(layout: Layout, rse: RSESpec) -> processes.Proc:
    """Run XRootD in the foreground of its own session (its PID is the server's) and wait for its ports.
    Its environment is the GSI client's of the copies it pulls: the RSE identity and the lake CA."""
    home = layout.rse_dir(rse)
    argv = ["/usr/bin/xrootd", "-c", str(home / "xrootd.cfg"), "-n", rse.name.lower()]
    if user := run_as():
        argv += ["-R", user]
    env = {"PATH": "/usr/bin:/bin", "X509_USER_PROXY": str(home / "tls" / "x509up"),
           "X509_CERT_DIR": str(home / "tls" / "cadir"), "XDG_CACHE_HOME": str(home / "cache")}
    return processes.serve(layout.pids, f"xrootd-{rse.name}", argv, layout.logs / f"xrootd-{rse.name}.log",
                           env=env, cwd=home, ready=lambda: healthy(layout, rse), what=f"XRootD for {rse.name}",
                           timeout=20, interval=0.05, why=lambda log: processes.last_line(log, skip=BANNERS))


def healthy(layout: Layout, rse: RSESpec) -> bool:
    return all(_accepts(port) for port in (layout.root_port(rse), layout.https_port(rse)))


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
