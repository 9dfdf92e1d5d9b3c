"""`nightlake retrieve`: download a selection of the lake, every file verified against Rucio's adler32."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nightlake.cli.common import finish_run, metrics_port
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.observe.events import Event, EventBus
from nightlake.runs.rundir import RunDir
from nightlake.night.spec import human_bytes


@click.command("retrieve")
@click.argument("dids", nargs=-1)
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Select files by DID metadata (repeatable, ANDed); needs --scope.")
@click.option("--scope", help="Scope searched by --filter.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Download directory: files land in OUT/<scope>/<name>, as with `rucio download`.")
@click.option("--rse", help="Only use replicas on RSEs matching this RSE expression.")
@click.option("--from-rse", help="Prefer this RSE when it holds a replica; otherwise any.")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory: journal, events, summary. Re-running the same command resumes.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True, help="Parallel downloads.")
@click.option("--batch", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Files per batch (one list_replicas call each when planning).")
@metrics_port
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def retrieve_cmd(dids, filters, scope, out, rse, from_rse, run_dir, workers, batch, metrics_port, quiet,
                 as_json) -> None:
    """Download DIDs (files, datasets, containers) or a metadata selection, verified and resumable."""
    from nightlake.flows.retrieve.run import RetrieveRequest, parse_filter

    request = RetrieveRequest(out=out, run=run_dir, dids=tuple(dids), filters=tuple(parse_filter(f) for f in filters),
                              scope=scope, rse=rse, from_rse=from_rse, workers=workers, batch_files=batch)
    finish_run(lambda bus: _run_with_progress(request, bus, quiet or as_json), metrics_port,
               lambda summary: _print_summary(summary, run_dir, as_json))


def _run_with_progress(request, bus: EventBus, quiet: bool) -> dict:
    from nightlake.flows.retrieve.run import run_retrieve

    if quiet:
        return run_retrieve(request, bus)
    if not console.is_terminal:
        from nightlake.cli.progress import ProgressLog

        bus.subscribe(ProgressLog(console, "downloaded"))
        return run_retrieve(request, bus)
    progress = RetrieveProgress()
    bus.subscribe(progress)
    with progress.bar:
        return run_retrieve(request, bus)


class RetrieveProgress:
    """Listens to the event stream (accounting is separate from transfer): files, MB, failures."""

    def __init__(self):
        from nightlake.cli.progress import Tally

        self._lock = threading.Lock()
        self.tally = Tally()
        self.bar = Progress(TextColumn("[bold]downloaded"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[mb]:.1f} MB  failed {task.fields[failed]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.task = self.bar.add_task("", total=None, mb=0.0, failed=0)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.tally.count(event)
            t = self.tally
            self.bar.update(self.task, total=t.total or None, completed=t.moved_before + t.moved,
                            mb=t.bytes / 1e6, failed=t.failed)


def _print_summary(summary: dict, run_dir: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    files, size = summary["files"], summary["bytes"]
    table = Table(show_header=False)
    table.add_row("files done", f"{files['done']} / {files['total']}")
    table.add_row("bytes done", f"{human_bytes(size['done'])} of {human_bytes(size['total'])}")
    table.add_row("failed", str(files["failed"]))
    if summary.get("elapsed_s"):
        table.add_row("this run", f"{summary['elapsed_s']:.1f} s")
    out.print(f"retrieve {run_dir} → {summary['out']}", markup=False)
    out.print(table)
    for problem in summary["problems"][:5]:
        console.print(f"[red]failed[/] {problem['did']}: " + escape(f"[{problem['error_class']}] {problem['message']}"))
    if summary["problems"]:
        console.print(f"all problems: {RunDir(run_dir).summary}")
