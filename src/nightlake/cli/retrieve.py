"""`nightlake retrieve`: download a selection of the lake, every file verified against Rucio's adler32."""

from __future__ import annotations

from pathlib import Path

import click

from nightlake.cli.cluster_flags import cluster_flags, cluster_spec
from nightlake.cli.common import (
    directory_to_make,
    done_rows,
    finish_run,
    metrics_port,
    patience,
    print_summary,
    run_with_progress,
)


@click.command("retrieve")
@click.argument("dids", nargs=-1)
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Select files by DID metadata (repeatable, ANDed); needs --scope.")
@click.option("--scope", help="Scope searched by --filter.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=directory_to_make,
              help="Download directory: files land in OUT/<scope>/<name>, as with `rucio download`.")
@click.option("--rse", help="Only use replicas on RSEs matching this RSE expression.")
@click.option("--from-rse", help="Prefer this RSE when it holds a replica; otherwise any.")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=directory_to_make,
              help="Run directory: journal, events, summary. Re-running the same command resumes.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True, help="Parallel downloads.")
@click.option("--batch", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Files per batch (one list_replicas call each when planning).")
@patience
@cluster_flags
@metrics_port
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def retrieve_cmd(dids, filters, scope, out, rse, from_rse, run_dir, workers, batch, patience, metrics_port, quiet,
                 as_json, **cluster) -> None:
    """Download DIDs (files, datasets, containers) or a metadata selection, verified and resumable."""
    from nightlake.flows.retrieve.run import RetrieveRequest, parse_filter, run_retrieve

    request = RetrieveRequest(out=out, run=run_dir, dids=tuple(dids), filters=tuple(parse_filter(f) for f in filters),
                              scope=scope, rse=rse, from_rse=from_rse, workers=workers, batch_files=batch,
                              patience=patience, cluster=cluster_spec(cluster))
    finish_run(lambda bus: run_with_progress(lambda b: run_retrieve(request, b), bus, quiet or as_json,
                                             "downloaded"),
               metrics_port, lambda summary: _print_summary(summary, run_dir, as_json))


def _print_summary(summary: dict, run_dir: Path, as_json: bool) -> None:
    rows = [*done_rows(summary), ("failed", str(summary["files"]["failed"]))]
    print_summary(summary, f"retrieve {run_dir} → {summary['out']}", rows, run_dir, as_json)
