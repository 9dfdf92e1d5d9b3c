"""`nightlake ingest`: move a night into the lake: upload, register, set metadata, replicate."""

from __future__ import annotations

from pathlib import Path

import click

from nightlake import BadInput
from nightlake.cli.cluster_flags import cluster_flags, cluster_spec
from nightlake.cli.common import (
    directory_to_make,
    done_rows,
    finish_run,
    metrics_port,
    parse_policy,
    patience,
    print_summary,
    run_with_progress,
)
from nightlake.cli.console import err
from nightlake.flows.ingest.context import IngestOptions
from nightlake.observe.events import Event, EventBus, Kind


@click.command("ingest")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--rse", required=True, help="The RSE to upload to (e.g. ONSITE).")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=directory_to_make,
              help="Run directory: journal, events, summary. Re-running the same command resumes.")
@click.option("--scope", help="Scope of the files (a directory source; a spec names its own).")
@click.option("--dataset", help="Put every file of a directory into this dataset (default: one per sub-directory).")
@click.option("--vo", help="CTAO's names (its Rucio policy) for a directory: each file's path from the last "
                             "VO/SCOPE/ of SOURCE's path on (SOURCE is /VO/SCOPE if it has none); each directory "
                             "a dataset, a container per directory level above.")
@click.option("--register", type=click.Choice(["generic", "dirac"]), default="generic", show_default=True,
              help="How files are registered: Rucio's bulk calls, or its DIRAC endpoint (add_files: files, "
                   "replicas, missing datasets and containers in one call per batch; CTAO names).")
@click.option("--in-place", is_flag=True, help="The files are already on the RSE: verify and register, no copy.")
@click.option("--scheme", help="Force a protocol of the RSE (https, root, ...); default: Rucio's preferred.")
@click.option("--rule", "rules", multiple=True,
              help="Replication rule per dataset: EXPR[,copies=N][,lifetime=S][,activity=A]. Repeatable.")
@click.option("--require", "required", multiple=True, help="Metadata key every file must carry (else quarantined).")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True, help="Parallel uploads.")
@click.option("--batch", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Files per bulk catalog call (server limit 1000).")
@click.option("--catalog-lanes", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Bulk catalog calls in flight in the register and in the metadata stage.")
@click.option("--no-close", is_flag=True, help="Leave the datasets open at the end.")
@click.option("--follow-links", is_flag=True,
              help="Ingest the files that a directory source's links point to out of its tree (default: skipped).")
@patience
@cluster_flags
@metrics_port
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def ingest_cmd(source, rse, run_dir, scope, dataset, vo, register, in_place, scheme, rules, required, workers, batch,
               catalog_lanes, no_close, follow_links, patience, metrics_port, quiet, as_json, **cluster) -> None:
    """Upload, register, set the metadata of and replicate a night: SOURCE is a directory or a night spec (.toml)."""
    from nightlake.flows.ingest.run import IngestRequest, run_ingest

    options = IngestOptions(rse=rse, workers=workers, batch_files=batch, required_meta=tuple(required),
                            close_datasets=not no_close, in_place=in_place, register=register,
                            catalog_lanes=catalog_lanes)
    request = IngestRequest(source=source, run=run_dir, options=options, scope=scope, dataset=dataset,
                            scheme=scheme, rules=tuple(_ingest_rule(r) for r in rules), follow_links=follow_links,
                            vo=vo, patience=patience, cluster=cluster_spec(cluster))

    def run(bus: EventBus) -> dict:
        bus.subscribe(_warn_skipped)
        return run_with_progress(lambda b: run_ingest(request, b), bus, quiet or as_json, "uploaded")

    finish_run(run, metrics_port, lambda summary: _print_summary(summary, run_dir, as_json))


def _warn_skipped(event: Event) -> None:
    """What a directory source left out is said as it is found, even with --quiet: one line per reason."""
    if event.kind is Kind.SOURCE_SKIPPED:
        err.print(f"nightlake: warning: skipped {event.fields['files']} {event.fields['reason']}, e.g. "
                  + ", ".join(event.fields["sample"]), markup=False)


def _ingest_rule(text: str):
    policy = parse_policy(text)
    if policy.source_replica_expression:
        raise BadInput(f"--rule {text!r}: source= applies to `nightlake rules add`, not to ingest")
    return policy


def _print_summary(summary: dict, run_dir: Path, as_json: bool) -> None:
    rows = [*done_rows(summary),
            ("failed / quarantined", f"{summary['files']['failed']} / {summary['files']['quarantined']}"),
            ("datasets", ", ".join(f"{k} {v}" for k, v in summary["datasets"].items() if v)),
            ("rules", str(sum(1 for r in summary["rules"] if r["rule_id"])))]
    if skipped := sum(entry["files"] for entry in summary.get("skipped", [])):
        rows.append(("skipped in the source", str(skipped)))
    print_summary(summary, f"run {run_dir}", rows, run_dir, as_json)
