"""`nightlake campaign CAMPAIGN.toml --run DIR`: a data challenge's phases, in order, on one timeline."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from nightlake.cli.common import directory_to_make, patience
from nightlake.cli.console import err, out


@click.command("campaign")
@click.argument("campaign_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=directory_to_make,
              help="Campaign directory: one run directory per phase. Re-running the same command resumes.")
@click.option("--lake-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The local lake whose RSEs a phase's fault applies to [env NIGHTLAKE_LAKE_DIR; "
                   "default .nightlake/lake]. Faults exist only on the local lake.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Parallel uploads of each phase.")
@click.option("--interval", type=click.FloatRange(0.1), default=5, show_default=True,
              help="Seconds between polls of a phase's rules.")
@patience
@click.option("--quiet", is_flag=True, help="No progress display, only the table at the end.")
def campaign_cmd(campaign_file, run_dir, lake_dir, workers, interval, patience, quiet) -> None:
    """Run every phase of CAMPAIGN_FILE in order (exit 0 when all are done and their rules OK).

    Every phase is checked first (its night, scope, RSE, rules and fault); a re-run skips the
    finished phases and resumes the interrupted one. `nightlake report DIR` draws them all."""
    from nightlake.catalog.client import rucio_host
    from nightlake.cli.common import run_with_progress
    from nightlake.cli.progress import ReplicationRates
    from nightlake.cli.rules import PlainProgress
    from nightlake.flows.campaign import CampaignOptions, Display, run_campaign
    from nightlake.lake.faults import LakeFaults
    from nightlake.lake.layout import Layout
    from nightlake.night.campaign import load_campaign
    from nightlake.observe.events import EventBus

    campaign = load_campaign(campaign_file)
    faults = LakeFaults(Layout.load_or_new(lake_dir), rucio_host())
    display = Display(
        say=(lambda line: None) if quiet else (lambda line: err.print(f"[bold]campaign:[/] {line}", highlight=False)),
        run=lambda work: run_with_progress(work, EventBus(), quiet, "uploaded"),
        on_poll=(lambda: lambda seen: None) if quiet else (lambda: PlainProgress(ReplicationRates())))
    outcomes = run_campaign(campaign, run_dir, faults, CampaignOptions(workers, patience, interval), display)
    table = Table(title=f"campaign {campaign.campaign.name}: {run_dir}")
    for column in ("phase", "state", "files done", "failed", "rules OK"):
        table.add_column(column)
    for o in outcomes:
        rules = f"{o.rules['ok']} / {o.rules['rules']}" if o.rules else "-"
        table.add_row(o.name, o.state, f"{o.files['done']} / {o.files['total']}" if o.files else "-",
                      str(o.files["failed"]) if o.files else "-", rules)
    out.print(table)
    out.print(f"report: nightlake report {run_dir} --out REPORT_DIR", markup=False)
    if not all(o.state == "finished" and (not o.rules or o.rules["ok"] == o.rules["rules"]) for o in outcomes):
        raise click.exceptions.Exit(1)
