"""Bring the local lake up, take it down, and say how it is: the life cycle over its components.

`up` is idempotent: it starts only what is not running, and makes the catalog (schema, scope,
RSEs) only once. `down` stops the processes recorded in the lake's PID files, and nothing else.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nightlake import BadInput
from nightlake.lake import (
    certs,
    faults,
    idp,
    listening,
    objects,
    postgres,
    processes,
    rucio_server,
    system,
    transfer_service,
    watchdog,
    xrootd,
)
from nightlake.lake.layout import HOST, RSES, Layout

Echo = Callable[[str], None]
CATALOG_READY = "catalog.ready"
CATALOG_CONTENT = "scope, RSEs (ONSITE-DAQ too), protocols, quotas, distances, fts, x509 and oidc identities\n"


@dataclass(frozen=True)
class Component:
    """One line of `lake status`."""

    name: str
    address: str
    pid: int | None
    running: bool
    healthy: bool
    fault: str | None = None
    bound: tuple[str, ...] = ()  # the addresses its ports listen on, as the kernel has them


def components(layout: Layout) -> list[str]:
    """Process names in start order (`down` walks it backwards)."""
    return ["postgresql", idp.NAME, *(f"xrootd-{rse.name}" for rse in RSES), watchdog.NAME, transfer_service.NAME,
            "rucio-server", *rucio_server.DAEMONS]


def is_up(layout: Layout) -> bool:
    """Every component answers, except an RSE that is down on purpose (`lake fault RSE down`)."""
    return all(c.running and c.healthy for c in status(layout) if c.fault != "down")


def up(layout: Layout, echo: Echo = print) -> bool:
    """Start whatever is not running; False when the lake was already up."""
    system.check_packages()
    if layout.state_file.exists() and is_up(layout):
        return False
    _check_ports(layout)
    rucio_server.install(layout, echo)
    idp.install(layout, echo)
    layout.save()
    _check_reachable(layout.root)
    certs.ensure(layout.certs)
    rucio_server.write_configs(layout)
    _start_catalog_db(layout, echo)
    _ensure_running(layout, idp.NAME, lambda: idp.start(layout), echo)
    in_force = faults.current(layout)
    for rse in RSES:
        if in_force.get(rse.name) != "down":
            _ensure_running(layout, f"xrootd-{rse.name}", lambda rse=rse: _start_rse(layout, rse, in_force), echo)
    _ensure_running(layout, watchdog.NAME, lambda: watchdog.start(layout), echo)
    _ensure_running(layout, transfer_service.NAME, lambda: transfer_service.start(layout), echo)
    _ensure_running(layout, "rucio-server", lambda: rucio_server.start_server(layout), echo)
    ready = layout.etc / CATALOG_READY
    if not ready.exists():
        objects.create(layout, client(layout))
        ready.write_text(CATALOG_CONTENT)
        echo(f"catalog ready: scope, {len(RSES)} RSEs, quotas, distances, fts")
    elif ready.read_text() != CATALOG_CONTENT:
        objects.upgrade(layout, client(layout), ready.read_text())
        ready.write_text(CATALOG_CONTENT)
        echo("catalog: brought up to date (" + CATALOG_CONTENT.strip() + ")")
    for daemon in rucio_server.DAEMONS:
        _ensure_running(layout, daemon, lambda d=daemon: rucio_server.start_daemon(layout, d), echo)
    return True


def _ensure_running(layout: Layout, name: str, start: Callable[[], processes.Proc], echo: Echo) -> None:
    proc = processes.read(layout.pids, name)
    if proc and proc.alive():
        return
    proc = start()
    echo(f"started {name} (pid {proc.pid})")


def _start_catalog_db(layout: Layout, echo: Echo) -> None:
    """PostgreSQL, and on first start a fresh catalog; storage left from an older catalog is wiped,
    since it would be dark data that makes re-uploads of the same names fail."""
    if postgres.initdb(layout):
        echo(f"created PostgreSQL cluster in {layout.pgdata}")
    _ensure_running(layout, "postgresql", lambda: postgres.start(layout), echo)
    if (layout.etc / CATALOG_READY).exists():
        return
    shutil.rmtree(layout.storage, ignore_errors=True)
    postgres.create_database(layout)
    rucio_server.bootstrap(layout)
    echo("Rucio schema and root account created")


def _start_rse(layout: Layout, rse, in_force: dict[str, str]) -> processes.Proc:
    xrootd.prepare(layout, rse, fault=in_force.get(rse.name))
    return xrootd.start(layout, rse)


def _check_ports(layout: Layout) -> None:
    """Only the ports of components that are not already running must be free."""
    ports = layout.ports()
    running = {c.name for c in status(layout) if c.running} if layout.state_file.exists() else set()
    needed = {}
    for component, port in ports.items():
        owner = component if component in ("postgresql", "rucio-server", transfer_service.NAME, idp.NAME) \
            else f"xrootd-{component.split()[1]}"
        if owner not in running:
            needed[component] = port
    system.check_ports(needed)


def _check_reachable(root: Path) -> None:
    """PostgreSQL and XRootD run as unprivileged users when we are root: they must reach the lake."""
    if os.geteuid() != 0:
        return
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, os.stat(root).st_mode | stat.S_IXOTH)
    for parent in root.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise BadInput(f"the lake directory {root} is not reachable by the postgres and xrootd users "
                           f"({parent} is not searchable by others); choose another --dir or run: chmod o+x {parent}")


def down(layout: Layout, purge: bool = False, echo: Echo = print) -> list[processes.Proc]:
    """Stop the lake's own processes by PID, newest first; with `purge`, delete all its state.
    Faults end with the lake: the next `up` starts every RSE as it should be."""
    stopped = []
    for name in reversed(components(layout)):
        proc = processes.read(layout.pids, name)
        if proc is None:
            continue
        was_alive = proc.alive()
        # SIGINT is PostgreSQL's "fast" shutdown; everything else stops on SIGTERM.
        processes.stop(layout.pids, proc, signal.SIGINT if name == "postgresql" else signal.SIGTERM)
        if was_alive:
            stopped.append(proc)
            echo(f"stopped {name} (pid {proc.pid})")
    faults.clear_all(layout)
    if purge and layout.root.exists():
        shutil.rmtree(layout.root, onerror=_ignore_vanished)
        echo(f"deleted {layout.root}")
    return stopped


def _ignore_vanished(function, path, exc_info) -> None:
    """A file that disappears while the tree is deleted is already what we want."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def status(layout: Layout) -> list[Component]:
    """Each component with its address, PID, and whether it answers."""
    rows = []
    in_force = faults.current(layout)
    for name in components(layout):
        proc = processes.read(layout.pids, name)
        running = bool(proc and proc.alive())
        address, healthy = _probe(layout, name, running)
        fault = in_force.get(name.removeprefix("xrootd-")) if name.startswith("xrootd-") else None
        bound = tuple(a for port in _ports(layout, name) for a in listening.bound(port)) if running else ()
        rows.append(Component(name, address, proc.pid if proc else None, running, healthy, fault, bound))
    return rows


def _ports(layout: Layout, name: str) -> list[int]:
    """The ports a component listens on (Rucio's daemons listen on none)."""
    if name.startswith("xrootd-"):
        rse = next(r for r in RSES if f"xrootd-{r.name}" == name)
        return [layout.root_port(rse), layout.https_port(rse)]
    ports = {"postgresql": layout.pg_port, "rucio-server": layout.rucio_port,
             transfer_service.NAME: layout.transfers_port, idp.NAME: layout.idp_port}
    return [ports[name]] if name in ports else []


def _probe(layout: Layout, name: str, running: bool) -> tuple[str, bool]:
    if name == "postgresql":
        return f"{HOST}:{layout.pg_port}", running and postgres.healthy(layout)
    if name == "rucio-server":
        return layout.rucio_url, running and rucio_server.healthy(layout)
    if name == transfer_service.NAME:
        return layout.transfers_url, running and transfer_service.healthy(layout)
    if name == idp.NAME:
        return layout.idp_url, running and idp.healthy(layout)
    if name.startswith("xrootd-"):
        rse = next(r for r in RSES if f"xrootd-{r.name}" == name)
        address = f"root://{HOST}:{layout.root_port(rse)}  https://{HOST}:{layout.https_port(rse)}"
        return address, running and xrootd.healthy(layout, rse)
    return "-", running


def env(layout: Layout, auth: str = "userpass") -> dict[str, str]:
    """What the stock `rucio` CLI needs to talk to this lake (and its root:// clients, XRootD's GSI
    with the lake's proxy, to find the lake CA); with `oidc`, where the bearer token is."""
    values = {"RUCIO_CONFIG": str(layout.client_cfg_for(auth)), "X509_USER_PROXY": str(layout.proxy),
              "X509_CERT_DIR": str(layout.ca_dir), "NIGHTLAKE_LAKE_DIR": str(layout.root)}
    if auth == "oidc":
        values["BEARER_TOKEN_FILE"] = str(layout.token_file)
    bindir = Path(sys.executable).parent
    if (bindir / "rucio").exists():
        values["PATH"] = f"{bindir}:{os.environ.get('PATH', '')}"
    return values


def env_lines(layout: Layout, auth: str = "userpass") -> list[str]:
    return [f"export {key}={shlex.quote(value)}" for key, value in env(layout, auth).items()]


def client(layout: Layout):
    """A stock Rucio client bound to this lake, for the lake's own set-up (never another catalog).
    It trusts this lake's CA by name: Rucio's client prefers `X509_CERT_DIR` to the configuration's
    `ca_cert`, and an inherited one (another lake's, with the same CA subject but another key)
    would fail the TLS check with "certificate signature failure"."""
    os.environ["RUCIO_CONFIG"] = str(layout.client_cfg)
    os.environ["X509_USER_PROXY"] = str(layout.proxy)
    from rucio.client import Client

    return Client(ca_cert=str(layout.ca_cert))
