"""`nightlake lake up | down | status | env | fault | condor`: the local data lake from the command line."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from nightlake import BadInput
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.lake import control, faults, rucio_server, xrootd
from nightlake.lake.layout import DAQ, POLICIES, SCOPE, Layout, default_dir, default_server_venv

_dir = click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                    help="Lake state directory [env NIGHTLAKE_LAKE_DIR; default .nightlake/lake].")
_port_base = click.option("--port-base", type=click.IntRange(1024, 65000), default=None,
                          help="First of the lake's loopback ports [env NIGHTLAKE_LAKE_PORT_BASE; default 28000].")


_policy = click.option("--policy", type=click.Choice(POLICIES), default=None,
                       help="Rucio's policy for a new lake: generic (default) or ctao (CTAO's policy package: "
                            "absolute /<vo>/<scope>/... names, identity lfn2pfn), in a server venv of its own.")


def _layout(root: Path | None, port_base: int | None = None, policy: str | None = None) -> Layout:
    return Layout.load_or_new(root, port_base, policy=policy)


@click.group()
def lake() -> None:
    """The local data lake: Rucio + PostgreSQL + XRootD RSEs on 127.0.0.1."""


@lake.command()
@_dir
@_port_base
@_policy
def up(root: Path | None, port_base: int | None, policy: str | None) -> None:
    """Start the lake (idempotent: an up lake is left as it is)."""
    layout = _layout(root, port_base, policy)
    with console.status("starting the local lake…"):
        started = control.up(layout, echo=lambda line: console.print(f"  {line}"))
    if not started:
        console.print(f"the lake in {layout.root} is already up")
        return
    console.print(f"[green]lake up[/] in {layout.root}: Rucio at {layout.rucio_url}")
    console.print(f'use the stock rucio CLI with:  eval "$(nightlake lake env --dir {layout.root})"')


@lake.command()
@_dir
@click.option("--purge", is_flag=True, help="Also delete the lake's state (catalog, storage, certificates).")
def down(root: Path | None, purge: bool) -> None:
    """Stop the lake's own processes (by PID)."""
    layout = _layout(root)
    stopped = control.down(layout, purge=purge, echo=lambda line: console.print(f"  {line}"))
    console.print(f"lake down ({len(stopped)} process(es) stopped)")


@lake.command()
@_dir
def status(root: Path | None) -> None:
    """Each component, its address, where it listens, health and fault; exit 1 when something is down that
    should not be."""
    layout = _layout(root)
    table = Table()
    table.add_column("component", no_wrap=True)  # whole, so that `lake status | grep OFFSITE-B` shows its row
    for column in ("address", "listens on", "pid"):
        table.add_column(column, overflow="fold")  # folded, never cut: an address is to be copied
    table.add_column("state", no_wrap=True)
    rows = control.status(layout)
    for row in rows:
        state = ("[green]up[/]" if row.healthy else "[yellow]running, not answering[/]") if row.running \
            else "[red]down[/]"
        if row.fault:
            state = f"[magenta]fault: {row.fault}[/] ({state})"
        table.add_row(row.name, row.address, ", ".join(row.bound) or "-", str(row.pid or "-"), state)
    out.print(f"local lake {layout.root}", markup=False)
    out.print(table)
    if version := rucio_server.ping(layout) if layout.ca_cert.exists() else None:
        out.print(f"Rucio server: {version}")
    out.print(f"{DAQ.name} storage area (identity lfn2pfn, for `nightlake daemon`): "
              f"{xrootd.storage_area(layout, DAQ, SCOPE)}", markup=False)
    if not all(row.healthy for row in rows if row.fault != "down"):
        raise click.exceptions.Exit(1)


_auth = click.option("--auth", type=click.Choice(["userpass", "x509_proxy", "oidc"]), default="userpass",
                     show_default=True, envvar="NIGHTLAKE_AUTH",
                     help="The credential the client presents: the lake's password, its X.509 proxy, or an "
                          "OIDC token (`lake token` writes one) [env NIGHTLAKE_AUTH].")


@lake.command()
@_dir
@_auth
def env(root: Path | None, auth: str) -> None:
    """Print `export` lines for the stock rucio CLI: eval "$(nightlake lake env)"."""
    layout = _layout(root)
    if not layout.client_cfg_for(auth).exists():
        raise click.UsageError(f"no lake in {layout.root}: run `nightlake lake up` first")
    click.echo("\n".join(control.env_lines(layout, auth)))


@lake.command()
@_dir
@click.option("--lifetime", type=click.IntRange(min=1), default=3600, show_default=True,
              help="Seconds the access token is valid.")
@click.option("--out", "target", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Token file to (re)write [default: the lake's BEARER_TOKEN_FILE, see `lake env --auth oidc`].")
def token(root: Path | None, lifetime: int, target: Path | None) -> None:
    """Get a new OIDC access token from the lake's identity provider into a token file, as
    oidc-agent would (run it again, or from cron, to renew the token a long run reads)."""
    from nightlake.lake import idp

    layout = _layout(root)
    if not idp.healthy(layout):
        raise click.UsageError(f"the identity provider of {layout.root} does not answer: run `nightlake lake up`")
    path = target or layout.token_file
    idp.write_token(path, idp.issue_token(layout, lifetime=lifetime))
    console.print(f"token valid for {lifetime} s written to {path}")


@lake.command()
@_dir
@_policy
def install(root: Path | None, policy: str | None) -> None:
    """Install the Rucio server venv and check system packages, without starting anything."""
    from nightlake.lake import system

    system.check_packages()
    from nightlake.lake import idp

    # a policy's venv is the machine's, not a lake's: --policy installs it whatever lake is in --dir
    layout = _layout(root) if policy is None else Layout(root or default_dir(), 0, default_server_venv(policy), policy)
    rucio_server.install(layout, echo=console.print)
    idp.install(layout, echo=console.print)
    console.print("lake software installed")


@lake.command()
@_dir
@click.argument("rse")
@click.argument("mode", required=False)
@click.option("--clear", is_flag=True, help="End the RSE's fault: it is started as `lake up` makes it.")
@click.option("--share", type=click.FloatRange(0, 1, min_open=True), default=None,
              help=f"error only: the share of opens and creates that fail [default {faults.ERROR_SHARE:g}].")
def fault(root: Path | None, rse: str, mode: str | None, clear: bool, share: float | None) -> None:
    """Put an RSE in a fault MODE on purpose (down, readonly, full, slow, error, denied), or --clear it.

    The storage's own behaviour, not a mock: down stops its XRootD; readonly makes the export
    read-only; full lets nothing new be created (an overlay, root only); slow throttles it to 256 kB/s;
    error answers a share of requests with HTTP 500 (a FUSE file system failing a share of opens with
    EIO, root only); denied refuses every request (403). `lake down` ends every fault."""
    layout = _layout(root)
    if not layout.state_file.exists():
        raise BadInput(f"no lake in {layout.root}: run `nightlake lake up` first")
    if clear == bool(mode):
        raise BadInput(f"give a fault mode ({', '.join(faults.MODES)}) or --clear, not both or neither")
    if share is not None and mode != "error":
        raise BadInput("--share goes with the error fault only")
    if clear:
        faults.clear(layout, rse)
        console.print(f"{rse}: fault cleared")
    else:
        faults.inject(layout, rse, mode, share=share)
        console.print(f"{rse}: fault {mode}" + (f" (share {share:g})" if share is not None else ""))


@lake.group("condor")
def condor_pool() -> None:
    """A personal HTCondor pool on 127.0.0.1 (Debian trixie's minicondor in a chroot) for --cluster htcondor:N."""


_pool_dir = click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path),
                         default=Path(".nightlake/condor"), show_default=True, help="The pool's directory.")


@condor_pool.command("up")
@_pool_dir
@click.option("--port", type=click.IntRange(1024, 65000), default=9618, show_default=True,
              help="The collector's (and every daemon's shared) port; the next 49 are the pool's too.")
@click.option("--share", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another directory the jobs must see at the same path (read-only). Repeatable.")
@click.option("--proxy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=lambda: os.environ.get("X509_USER_PROXY"),
              help="Client certificate the jobs get a copy of [default: $X509_USER_PROXY].")
def condor_up(root: Path, port: int, share: tuple[Path, ...], proxy: Path | None) -> None:
    """Start the pool (bootstrapped the first time: debootstrap, about a minute or three)."""
    from nightlake.lake import condor

    pool = condor.Pool(root)
    with console.status("starting the HTCondor pool…"):
        started = condor.up(pool, port, condor.worker_shares() + list(share), proxy,
                            echo=lambda line: console.print(f"  {line}"))
    if not started:
        console.print(f"the HTCondor pool in {pool.path} is already up")
    console.print(f'submit with:  eval "$(nightlake lake condor env --dir {root})"; jobs get their proxy as '
                  f'--job-extra \'environment = "X509_USER_PROXY={pool.proxy}"\'')


@condor_pool.command("down")
@_pool_dir
def condor_down(root: Path) -> None:
    """Stop the pool's master by its PID and unmount what `up` mounted."""
    from nightlake.lake import condor

    condor.down(condor.Pool(root), echo=lambda line: console.print(f"  {line}"))
    console.print("HTCondor pool down")


@condor_pool.command("env")
@_pool_dir
def condor_env(root: Path) -> None:
    """Shell lines that put the pool's condor_submit / condor_rm first on PATH (for dask-jobqueue)."""
    from nightlake.lake import condor

    out.print(f"export PATH={condor.Pool(root).env()['PATH']}", markup=False, highlight=False)
