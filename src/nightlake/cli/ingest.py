"""`nightlake ingest` and `nightlake status`: move a night into the lake, and say where it stands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from nightlake.cli.common import finish_run, metrics_port, parse_policy
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake import BadInput
from nightlake.observe.events import EventBus
from nightlake.flows.ingest.pipeline import IngestOptions
from nightlake.runs.rundir import RunDir, summarize
from nightlake.night.spec import human_bytes


@click.command("ingest")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--rse", required=True, help="The RSE to upload to (e.g. ONSITE).")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory: journal, events, summary. Re-running the same command resumes.")
@click.option("--scope", help="Scope of the files (a directory source; a spec names its own).")
@click.option("--dataset", help="Put every file of a directory into this dataset (default: one per sub-directory).")
@click.option("--in-place", is_flag=True, help="The files are already on the RSE: verify and register, no copy.")
@click.option("--scheme", help="Force a protocol of the RSE (https, root, ...); default: Rucio's preferred.")
@click.option("--rule", "rules", multiple=True,
              help="Replication rule per dataset: EXPR[,copies=N][,lifetime=S][,activity=A]. Repeatable.")
@click.option("--require", "required", multiple=True, help="Metadata key every file must carry (else quarantined).")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True, help="Parallel uploads.")
@click.option("--batch", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Files per bulk catalog call (server limit 1000).")
@click.option("--no-close", is_flag=True, help="Leave the datasets open at the end.")
@metrics_port
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def ingest_cmd(source, rse, run_dir, scope, dataset, in_place, scheme, rules, required, workers, batch,
               no_close, metrics_port, quiet, as_json) -> None:
    """Upload, register, describe and replicate a night: SOURCE is a directory or a night spec (.toml)."""
    from nightlake.flows.ingest.run import IngestRequest

    options = IngestOptions(rse=rse, workers=workers, batch_files=batch, required_meta=tuple(required),
                            close_datasets=not no_close, in_place=in_place)
    request = IngestRequest(source=source, run=run_dir, options=options, scope=scope, dataset=dataset,
                            scheme=scheme, rules=tuple(_ingest_rule(r) for r in rules))
    finish_run(lambda bus: _run_with_progress(request, bus, quiet or as_json), metrics_port,
               lambda summary: _print_summary(summary, run_dir, as_json))


def _ingest_rule(text: str):
    policy = parse_policy(text)
    if policy.source_replica_expression:
        raise BadInput(f"--rule {text!r}: source= applies to `nightlake rules add`, not to ingest")
    return policy


def _run_with_progress(request, bus: EventBus, quiet: bool) -> dict:
    """Bars in a terminal, a line every half minute in a log; nothing with --quiet or --json."""
    from nightlake.cli.progress import IngestProgress, ProgressLog
    from nightlake.flows.ingest.run import run_ingest

    if quiet:
        return run_ingest(request, bus)
    if not console.is_terminal:
        bus.subscribe(ProgressLog(console, "uploaded"))
        return run_ingest(request, bus)
    with IngestProgress(console) as progress:
        bus.subscribe(progress)
        return run_ingest(request, bus)


def _print_summary(summary: dict, run_dir: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    files, size = summary["files"], summary["bytes"]
    elapsed = summary.get("elapsed_s") or 0
    table = Table(show_header=False)
    table.add_row("files done", f"{files['done']} / {files['total']}")
    table.add_row("bytes done", f"{human_bytes(size['done'])} of {human_bytes(size['total'])}")
    table.add_row("failed / quarantined", f"{files['failed']} / {files['quarantined']}")
    table.add_row("datasets", ", ".join(f"{k} {v}" for k, v in summary["datasets"].items() if v))
    table.add_row("rules", str(sum(1 for r in summary["rules"] if r["rule_id"])))
    if elapsed:
        table.add_row("this run", f"{elapsed:.1f} s")
    out.print(f"run {run_dir}", markup=False)
    out.print(table)
    for problem in summary["problems"][:5]:
        console.print(f"[red]{problem['state']}[/] {problem['did']}: "
                      + escape(f"[{problem['error_class']}] {problem['message']}"))
    if summary["problems"]:
        console.print(f"all problems: {RunDir(run_dir).summary}")


@click.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(run_dir: Path, as_json: bool) -> None:
    """Where an ingest or retrieve run stands, from its journal (safe while the run is going on)."""
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
    if "datasets" in summary:
        out.print("datasets: " + ", ".join(f"{k} {v}" for k, v in summary["datasets"].items() if v))
    for rule in summary.get("rules", []):
        out.print(f"rule {rule['rule_id'] or '(planned)'}: {rule['scope']}:{rule['dataset']} → "
                  f"{rule['copies']}× {rule['rse_expression']}")
    for problem in summary["problems"][:20]:
        out.print(f"{problem['state']} {problem['did']}: " + escape(f"[{problem['error_class']}] {problem['message']}"))


def _load_status(run: RunDir) -> tuple[dict, dict, str]:
    """(summary, description, title) of the run in `run`: an ingest, or else a retrieve."""
    from nightlake.flows.retrieve import run as retrieve
    from nightlake.runs.journal.download import DownloadJournal

    downloads = run.path / retrieve.JOURNAL_NAME
    if downloads.exists() and not run.journal.exists():
        with DownloadJournal.open(downloads) as journal:
            description = journal.run_meta().get("description", {})
            summary = retrieve.summarize(journal, Path(description.get("out", ".")))
        return summary, description, f"retrieve → {description.get('out')}"
    with run.load() as journal:
        description = journal.run_meta().get("description", {})
        return summarize(journal, failed_limit=20), description, \
            f"{description.get('source')} → {description.get('rse')}"
