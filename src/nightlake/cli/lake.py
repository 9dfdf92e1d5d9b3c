"""`nightlake lake up | down | status | env`: the local data lake from the command line."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.lake import control, rucio_server
from nightlake.lake.layout import Layout

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
    """Each component, its address and health; exit 1 when something is down."""
    layout = _layout(root)
    table = Table()
    for column in ("component", "address", "pid", "state"):
        table.add_column(column)
    rows = control.status(layout)
    for row in rows:
        state = ("[green]up[/]" if row.healthy else "[yellow]running, not answering[/]") if row.running \
            else "[red]down[/]"
        table.add_row(row.name, row.address, str(row.pid or "-"), state)
    out.print(f"local lake {layout.root}", markup=False)
    out.print(table)
    if version := rucio_server.ping(layout) if layout.ca_cert.exists() else None:
        out.print(f"Rucio server: {version}")
    if not all(row.healthy for row in rows):
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
