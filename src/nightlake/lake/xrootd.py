"""Storage: one XRootD server per RSE, serving root:// and https (WebDAV) on the same files.

TLS is configured because XrdHttp only loads its extension handlers (HTTP-TPC) with it, and adler32
is enabled so that `Want-Digest: adler32` and `xrdfs query checksum` answer, for up to 64 files at
once (XRootD's default of 4 makes the fifth concurrent request wait 30 s). `ofs.tpc` turns on
root:// third-party copy (without it a TPC open fails with `[3013] ... tpc not supported`): the
destination server pulls with its own `xrdcp --server`, up to 8 at once. XRootD binds every
interface and has no bind-address option, so `xrd.allow host` admits connections from loopback only.
When started by root it runs as the `xrootd` user (`-R`), which owns the storage.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from pathlib import Path

from nightlake.lake import processes
from nightlake.lake.layout import Layout, RSESpec
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
xrd.tlsca certfile {tls}/ca.pem
xrd.allow host localhost
xrd.allow host 127.0.0.1
{fault}"""

# What an RSE's fault (faults.py) adds to its config: the export option, and further directives.
FAULT_CONFIG = {
    "readonly": (" r/o", ""),
    "slow": ("", "xrootd.fslib throttle default\nthrottle.throttle data 262144\n"),
    "error": ("", "ofs.authorize\nacc.authdb {home}/authdb\n"),
}


def storage_area(layout: Layout, rse: RSESpec, scope: str) -> Path:
    """Where a scope's files of an identity-lfn2pfn RSE (ONSITE-DAQ) are on local disk: the
    directory an on-site writer writes to and `nightlake daemon` watches."""
    return layout.rse_data(rse) / EXPORT.strip("/") / scope


def run_as() -> str | None:
    """`xrootd` when we are root (the server drops privileges to it), else ourselves."""
    return service_user("xrootd", "xrootd-server")


def prepare(layout: Layout, rse: RSESpec, fault: str | None = None) -> None:
    """Directories, TLS material and config of one RSE's server (with its fault's directives, if
    any); the export root must exist because Rucio's WebDAV client checks the prefix before the
    first upload."""
    home = layout.rse_dir(rse)
    for sub in ("admin", "run", "tls"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (layout.rse_data(rse) / EXPORT.strip("/")).mkdir(parents=True, exist_ok=True)
    for name in ("host.pem", "host.key", "ca.pem"):
        shutil.copy(layout.certs / name, home / "tls" / name)
    os.chmod(home / "tls" / "host.key", 0o400)
    (home / "authdb").write_text("")  # no privileges for anyone: the `error` fault's database
    export_options, directives = FAULT_CONFIG.get(fault, ("", ""))
    (home / "xrootd.cfg").write_text(CONFIG.format(
        export=EXPORT, export_options=export_options, localroot=layout.rse_data(rse), admin=home / "admin",
        run=home / "run", root_port=layout.root_port(rse), https_port=layout.https_port(rse), tls=home / "tls",
        fault=directives.format(home=home)))
    if user := run_as():
        uid = pwd.getpwnam(user).pw_uid
        for path in (home, home / "admin", home / "run", home / "tls", *(home / "tls").iterdir(),
                     layout.rse_data(rse), layout.rse_data(rse) / EXPORT.strip("/")):
            if path.stat().st_uid != uid:  # a chown on a `full` RSE's overlay would need space
                shutil.chown(path, user, user)


def start(layout: Layout, rse: RSESpec) -> processes.Proc:
    """Run XRootD in the foreground of its own session (its PID is the server's) and wait for its ports."""
    home = layout.rse_dir(rse)
    argv = ["/usr/bin/xrootd", "-c", str(home / "xrootd.cfg"), "-n", rse.name.lower()]
    if user := run_as():
        argv += ["-R", user]
    proc = processes.start(layout.pids, f"xrootd-{rse.name}", argv, layout.logs / f"xrootd-{rse.name}.log",
                           cwd=home)
    return processes.wait_ready(proc, lambda: healthy(layout, rse), what=f"XRootD for {rse.name}",
                                log=layout.logs / f"xrootd-{rse.name}.log", timeout=20, interval=0.05)


def healthy(layout: Layout, rse: RSESpec) -> bool:
    return all(_accepts(port) for port in (layout.root_port(rse), layout.https_port(rse)))


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
