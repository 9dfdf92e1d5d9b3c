"""`nightlake lake up | down | status | env | fault`: the local data lake from the command line."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from nightlake import BadInput
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.lake import control, faults, rucio_server, xrootd
from nightlake.lake.layout import DAQ, SCOPE, Layout

_dir = click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                    help="Lake state directory [env NIGHTLAKE_LAKE_DIR; default .nightlake/lake].")
_port_base = click.option("--port-base", type=click.IntRange(1024, 65000), default=None,
                          help="First of the lake's loopback ports [env NIGHTLAKE_LAKE_PORT_BASE; default 28000].")


def _layout(root: Path | None, port_base: int | None = None) -> Layout:
    return Layout.load_or_new(root, port_base)


@click.group()
def lake() -> None:
    """The local data lake: Rucio + PostgreSQL + XRootD RSEs on 127.0.0.1."""


@lake.command()
@_dir
@_port_base
def up(root: Path | None, port_base: int | None) -> None:
    """Start the lake (idempotent: an up lake is left as it is)."""
    layout = _layout(root, port_base)
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
    """Each component, its address, health and fault; exit 1 when something is down that should not be."""
    layout = _layout(root)
    table = Table()
    for column in ("component", "address", "pid", "state"):
        table.add_column(column)
    rows = control.status(layout)
    for row in rows:
        state = ("[green]up[/]" if row.healthy else "[yellow]running, not answering[/]") if row.running \
            else "[red]down[/]"
        if row.fault:
            state = f"[magenta]fault: {row.fault}[/] ({state})"
        table.add_row(row.name, row.address, str(row.pid or "-"), state)
    out.print(f"local lake {layout.root}", markup=False)
    out.print(table)
    if version := rucio_server.ping(layout) if layout.ca_cert.exists() else None:
        out.print(f"Rucio server: {version}")
    out.print(f"{DAQ.name} storage area (identity lfn2pfn, for `nightlake daemon`): "
              f"{xrootd.storage_area(layout, DAQ, SCOPE)}", markup=False)
    if not all(row.healthy for row in rows if row.fault != "down"):
        raise click.exceptions.Exit(1)


@lake.command()
@_dir
def env(root: Path | None) -> None:
    """Print `export` lines for the stock rucio CLI: eval "$(nightlake lake env)"."""
    layout = _layout(root)
    if not layout.client_cfg.exists():
        raise click.UsageError(f"no lake in {layout.root}: run `nightlake lake up` first")
    click.echo("\n".join(control.env_lines(layout)))


@lake.command()
@_dir
def install(root: Path | None) -> None:
    """Install the Rucio server venv and check system packages, without starting anything."""
    from nightlake.lake import system

    system.check_packages()
    rucio_server.install(_layout(root), echo=console.print)
    console.print("lake software installed")


@lake.command()
@_dir
@click.argument("rse")
@click.argument("mode", required=False)
@click.option("--clear", is_flag=True, help="End the RSE's fault: it is started as `lake up` makes it.")
def fault(root: Path | None, rse: str, mode: str | None, clear: bool) -> None:
    """Put an RSE in a fault MODE on purpose (down, readonly, full, slow, error), or --clear it.

    The storage's own behaviour, not a mock: down stops its XRootD; readonly makes the export
    read-only; full lets nothing new be created (an overlay, root only); slow throttles it to 256 kB/s;
    error refuses every request. `lake down` ends every fault."""
    layout = _layout(root)
    if not layout.state_file.exists():
        raise BadInput(f"no lake in {layout.root}: run `nightlake lake up` first")
    if clear == bool(mode):
        raise BadInput(f"give a fault mode ({', '.join(faults.MODES)}) or --clear, not both or neither")
    if clear:
        faults.clear(layout, rse)
        console.print(f"{rse}: fault cleared")
    else:
        faults.inject(layout, rse, mode)
        console.print(f"{rse}: fault {mode}")
