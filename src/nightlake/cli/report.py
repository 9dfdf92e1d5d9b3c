"""`nightlake report`: the data-challenge report of a run directory (HTML + PNG + JSON + CSV)."""

from __future__ import annotations

from pathlib import Path

import click

from nightlake import BadInput
from nightlake.cli.common import directory_to_make


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=directory_to_make,
              help="Directory for index.html, the PNGs, report.json, throughput.csv and datasets.csv.")
@click.option("--retrieve", "retrieves", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="The --run directory of a retrieve of this night's data, to report with it. Repeatable.")
def report_cmd(run_dir: Path, out: Path, retrieves: tuple[Path, ...]) -> None:
    """Write the report of RUN_DIR (a run, or a campaign's directory) into --out; safe while it runs."""
    from nightlake.observe.report import write_report
    from nightlake.runs.campaign import CampaignDir

    if CampaignDir(run_dir).is_campaign():
        from nightlake.observe.report.campaign import write_campaign_report

        if retrieves:
            raise BadInput(f"{run_dir} holds a campaign: --retrieve applies to the report of one run")
        data = write_campaign_report(run_dir, out)
    else:
        data = write_report(run_dir, out, retrieves)
    click.echo(data["headline"])
    click.echo(f"report: {(out / 'index.html').absolute()}")
