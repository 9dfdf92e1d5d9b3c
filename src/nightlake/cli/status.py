"""`nightlake status`: where an ingest or retrieve run stands, from its journal; for a campaign's
directory, where each of its phases stands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from nightlake.cli.console import out
from nightlake.night.spec import human_bytes
from nightlake.runs.rundir import RETRIEVE, RunDir
from nightlake.runs.summary import ingest_summary, retrieve_summary


@click.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(run_dir: Path, as_json: bool) -> None:
    """Where an ingest or retrieve run (or each phase of a campaign) stands, from its journal (safe
    while the run is going on)."""
    from nightlake.runs.campaign import CampaignDir

    if CampaignDir(run_dir).is_campaign():
        _campaign_status(CampaignDir(run_dir), as_json)
        return
    summary, description, title = _load_status(RunDir(run_dir))
    for key in ("elapsed_s", "started", "ended"):
        summary.pop(key, None)
    if as_json:
        click.echo(json.dumps({"run": description, **summary}, indent=2, default=str))
        return
    table = Table()
    for column in ("state", "files", "bytes"):
        table.add_column(column, justify="right" if column != "state" else "left")
    for state, count in summary["files"].items():
        if state != "total" and (count or state in ("planned", "done")):
            table.add_row(state, str(count), human_bytes(summary["bytes"][state]))
    table.add_row("[bold]total", str(summary["files"]["total"]), human_bytes(summary["bytes"]["total"]))
    out.print(f"{run_dir}: {title}", markup=False)
    out.print(table)
    if unknown := summary.get("unknown_states"):
        out.print(f"states this nightlake does not know: {', '.join(unknown)} (written by a newer nightlake?)",
                  markup=False)
    for entry in summary.get("skipped", []):
        out.print(f"skipped in the source: {entry['files']} {entry['reason']}", markup=False)
    if "datasets" in summary:
        out.print("datasets: " + ", ".join(f"{k} {v}" for k, v in summary["datasets"].items() if v))
    for rule in summary.get("rules", []):
        out.print(f"rule {rule['rule_id'] or '(planned)'}: {rule['scope']}:{rule['dataset']} → "
                  f"{rule['copies']}× {rule['rse_expression']}")
    for problem in summary["problems"][:20]:
        out.print(f"{problem['state']} {problem['did']}: " + escape(f"[{problem['error_class']}] {problem['message']}"))


def _load_status(run: RunDir) -> tuple[dict, dict, str]:
    """(summary, description, title) of the run in `run`, an ingest or a retrieve, read-only."""
    kind = run.kind()
    with run.load(kind) as journal:
        description = journal.run_meta().get("description", {})
        if kind is RETRIEVE:
            return retrieve_summary(journal, Path(description.get("out", ".")), failed_limit=20), description, \
                f"retrieve → {description.get('out')}"
        return ingest_summary(journal, failed_limit=20), description, \
            f"{description.get('source')} → {description.get('rse')}"


def _campaign_status(campaign, as_json: bool) -> None:
    """One row per phase: its state in the campaign, its RSE, files and bytes done of its total."""
    state = campaign.state()
    rows = []
    for index, phase in enumerate(campaign.load()["phases"]):
        run = campaign.phase_run(index, phase["name"])
        progress = state["phases"].get(phase["name"], {}).get("state", "not started")
        files = size = None
        if run.journal().exists():
            with run.load() as journal:
                summary = ingest_summary(journal, failed_limit=0)
            files, size = summary["files"], summary["bytes"]
        rows.append({"phase": phase["name"], "state": progress, "rse": phase["rse"], "files": files, "bytes": size})
    if as_json:
        click.echo(json.dumps({"campaign": str(campaign.path), "phases": rows, "fault": state.get("fault")},
                              indent=2, default=str))
        return
    table = Table()
    for column in ("phase", "state", "RSE", "files done", "bytes done", "failed"):
        table.add_column(column, justify="left" if column in ("phase", "state", "RSE") else "right")
    for row in rows:
        files, size = row["files"] or {}, row["bytes"] or {}
        table.add_row(row["phase"], row["state"], row["rse"],
                      f"{files.get('done', 0):,}/{files.get('total', 0):,}" if files else "-",
                      f"{human_bytes(size.get('done', 0))}/{human_bytes(size.get('total', 0))}" if size else "-",
                      str(files.get("failed", 0)) if files else "-")
    out.print(f"{campaign.path}: campaign of {len(rows)} phases", markup=False)
    out.print(table)
    if fault := state.get("fault"):
        out.print(f"fault in force: {fault}", markup=False)
