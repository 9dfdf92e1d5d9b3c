"""`nightlake daemon`: register files in place as an on-site writer drops them, until stopped."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from nightlake.cli.common import directory_to_make, metrics_port, parse_policy, patience
from nightlake.cli.console import err
from nightlake.observe import metrics
from nightlake.observe.events import EventBus


@click.command("daemon")
@click.argument("watch_dir", type=click.Path(path_type=Path))
@click.option("--rse", required=True, help="The on-site RSE whose storage area WATCH_DIR is (identity lfn2pfn).")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=directory_to_make, help="Run directory: journal, events, summary. A restart resumes.")
@click.option("--scope", required=True, help="Scope of the files (WATCH_DIR is its storage area on the RSE, or below it).")
@click.option("--rule", "rules", multiple=True,
              help="Replication rule per dataset, added when it is created: EXPR[,copies=N][,lifetime=S][,activity=A].")
@click.option("--dataset-name", default="{site}_{date}_obs{obs_id:06d}_run{run:06d}", show_default=True,
              help="Dataset of a file, from its header's metadata ({date}: the night as YYYYMMDD).")
@click.option("--container-name", default="{site}_{date}", show_default=True, help="Container of the night's datasets.")
@click.option("--require", "required", multiple=True, help="Metadata key every file must carry (else invalid/).")
@click.option("--batch", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Files per batch (and per bulk catalog call).")
@click.option("--batch-age", type=click.FloatRange(0.1), default=5.0, show_default=True, metavar="SECONDS",
              help="A batch is registered once its oldest trigger is this old, full or not.")
@click.option("--quiet-time", type=click.FloatRange(0), default=300.0, show_default=True, metavar="SECONDS",
              help="A dataset is closed once its files have been quiet this long (or at `<dataset>.end`).")
@click.option("--rescan", type=click.FloatRange(0.1), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between two scans of WATCH_DIR for triggers.")
@click.option("--inotify", is_flag=True,
              help="Also see triggers as they are created (inotify; `pip install nightlake[daemon]`): "
                   "the rescan is then only the fallback, and can be rarer.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Files verified in parallel.")
@click.option("--log-every", type=click.FloatRange(1), default=30.0, show_default=True, metavar="SECONDS",
              help="A status line on stderr this often.")
@patience
@metrics_port
def daemon_cmd(watch_dir, rse, run_dir, scope, rules, dataset_name, container_name, required, batch, batch_age,
               quiet_time, rescan, inotify, workers, log_every, patience, metrics_port) -> None:
    """Register the files of WATCH_DIR in place as their `<file>.trigger` appears; SIGTERM or
    SIGINT finish the batch in progress and exit 0; a restart resumes."""
    from nightlake.flows.daemon.describe import Naming
    from nightlake.flows.daemon.request import DaemonRequest
    from nightlake.flows.daemon.run import run_daemon

    request = DaemonRequest(watch=watch_dir, run=run_dir, rse=rse, scope=scope,
                            rules=tuple(parse_policy(r) for r in rules),
                            naming=Naming(dataset_name, container_name), required=tuple(required),
                            batch_files=batch, batch_age=batch_age, quiet=quiet_time, rescan=rescan,
                            workers=workers, patience=patience, log_every=log_every, inotify=inotify)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    bus = EventBus()
    say = lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    with metrics.serving(metrics_port, bus):
        summary = run_daemon(request, bus, stop, say)
    files = summary["files"]
    say(f"daemon stopped: {files['done']} of {files['total']} files done, {files['failed']} failed, "
        f"{files['quarantined']} invalid; journal in {run_dir}")
