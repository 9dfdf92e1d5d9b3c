"""What the lake needs from the machine, checked before anything starts.

Each check fails with `BadInput` and one line a person at 3 a.m. can act on: the exact apt command
for a missing package, the port and the process holding it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
from pathlib import Path

from nightlake import BadInput

PG_BIN = Path("/usr/lib/postgresql/15/bin")

# executable or file (a glob where the path names the architecture) -> Debian package that provides it
REQUIRED = {
    str(PG_BIN / "initdb"): "postgresql-15",
    str(PG_BIN / "postgres"): "postgresql-15",
    "xrootd": "xrootd-server",
    "xrdcp": "xrootd-client",
    "xrdfs": "xrootd-client",
    "openssl": "openssl",
    # the transfer service: gfal2 with its Python bindings (for /usr/bin/python3) and plugins
    "/usr/lib/*/libgfal2.so.2": "gfal2",
    "/usr/lib/python3/dist-packages/gfal2.cpython-*.so": "python3-gfal2",
    "/usr/lib/*/gfal2-plugins/libgfal_plugin_http.so": "gfal2-plugin-http",
    "/usr/lib/*/gfal2-plugins/libgfal_plugin_xrootd.so": "gfal2-plugin-xrootd",
    "/usr/lib/*/gfal2-plugins/libgfal_plugin_file.so": "gfal2-plugin-file",
    # the RSEs' WLCG token authorisation, and the identity provider's runtime (Node.js 20: any source)
    "/usr/lib/*/libXrdAccSciTokens-5.so": "xrootd-scitokens-plugins",
    "node": "nodejs",
}


def missing_packages(required: dict[str, str] = REQUIRED) -> list[str]:
    """Debian packages whose executables are not found, in a stable order."""
    missing = {pkg for exe, pkg in required.items()
               if not (any(Path(p).is_file() for p in glob.glob(exe)) if os.sep in exe else shutil.which(exe))}
    return sorted(missing)


def check_packages(required: dict[str, str] = REQUIRED) -> None:
    if missing := missing_packages(required):
        pkgs = " ".join(missing)
        raise BadInput(f"missing system package(s) {pkgs}; install with: "
                       f"apt-get install -y --no-install-recommends {pkgs}")


def service_user(user: str, package: str) -> str | None:
    """The unprivileged user a server runs as when we are root (PostgreSQL refuses root, XRootD drops
    to its own user), or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise BadInput(f"running as root but there is no {user!r} user; "
                       f"install with: apt-get install -y {package}") from None
    return user


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (or holds) `port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def holder_of(port: int) -> str | None:
    """'pid N (command)' of the process listening on `port`, when /proc lets us see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {proc.name} ({cmd[:80]})"
        except OSError:
            continue
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A = LISTEN
                inodes.add(fields[9])
    return inodes


def check_ports(ports: dict[str, int]) -> None:
    """Fail on the first port already taken, naming the lake component and the holder."""
    for component, port in ports.items():
        if port_in_use(port):
            holder = holder_of(port)
            by = f" by {holder}" if holder else ""
            raise BadInput(f"port {port} (for {component}) is already in use{by}; stop it, or choose "
                           f"other ports with --port-base / NIGHTLAKE_LAKE_PORT_BASE")
