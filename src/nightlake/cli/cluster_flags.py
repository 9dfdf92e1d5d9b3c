"""The `--cluster` flags `ingest` and `retrieve` share: where the bytes move, and what each batch
job asks for (from the flags, or the `[cluster]` table of a TOML file, the flags winning)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

_FLAGS = [
    click.option("--cluster", metavar="KIND",
                 help="Move the bytes on a Dask cluster: local:N, tcp://HOST:PORT, htcondor:N or slurm:N."),
    click.option("--cluster-config", type=click.Path(dir_okay=False, path_type=Path),
                 help="TOML file whose [cluster] table sets the job options below."),
    click.option("--cluster-port", type=click.IntRange(0, 65535), default=0,
                 help="Port of the Dask scheduler the cluster starts on 127.0.0.1 (0: any free port)."),
    click.option("--cluster-threads", type=click.IntRange(1, 64), default=4, show_default=True,
                 help="Files each cluster worker moves at once."),
    click.option("--job-cores", type=click.IntRange(1), help="Cores per batch job (htcondor, slurm)."),
    click.option("--job-memory", help="Memory per batch job, e.g. 2GB."),
    click.option("--job-disk", help="Disk per batch job (htcondor), e.g. 1GB."),
    click.option("--job-queue", help="SLURM partition, or the HTCondor pool's collector."),
    click.option("--job-extra", multiple=True, help="A directive added to each batch job as it is. Repeatable."),
    click.option("--print-job-script", is_flag=True,
                 help="Print the batch job script htcondor:N / slurm:N would submit, and exit."),
]


def cluster_flags(command: Callable) -> Callable:
    for flag in reversed(_FLAGS):
        command = flag(command)
    return command


def cluster_spec(flags: dict[str, Any]) -> Any:
    """The `ClusterSpec` the flags ask for (None without --cluster); with --print-job-script, the
    job script is printed and the command ends here."""
    from nightlake import BadInput

    text = flags.pop("cluster")
    names = ("cluster_config", "cluster_port", "cluster_threads", "job_cores", "job_memory", "job_disk",
             "job_queue", "job_extra", "print_job_script")
    config, port, threads, cores, memory, disk, queue, extra, print_script = (flags.pop(n) for n in names)
    if text is None:
        return None
    from nightlake.flows.cluster import job_options, job_script, parse_cluster

    jobs = job_options(config, cores=cores, memory=memory, disk=disk, queue=queue, job_extra=extra)
    spec = parse_cluster(text, port=port, threads=threads, jobs=jobs)
    if print_script:
        if spec.kind not in ("htcondor", "slurm"):
            raise BadInput(f"--print-job-script: --cluster {text} submits no batch jobs")
        click.echo(job_script(spec))
        raise SystemExit(0)
    return spec
