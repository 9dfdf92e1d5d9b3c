"""`nightlake generate`: write a night spec's files to disk, valid FITS, deterministic by seed."""

from __future__ import annotations

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from nightlake.cli.common import directory_to_make
from nightlake.cli.console import err, out
from nightlake.flows.generate import generate
from nightlake.night.plan import Plan, summarize
from nightlake.night.spec import human_bytes, load_spec


@click.command("generate")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), callback=directory_to_make,
              help="Directory to write into.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Parallel writers (default: CPUs, at most 8).")
def generate_cmd(spec: str, out_dir: str, workers: int | None) -> None:
    """Write SPEC's files under OUT/<dataset>/<file> (valid FITS, deterministic; re-run resumes)."""
    plan = Plan(load_spec(spec))
    summary = summarize(plan)
    columns = ("generate", BarColumn(), TextColumn(f"{{task.fields[files]:,}}/{summary.n_files:,} files"),
               DownloadColumn(binary_units=False), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("generate", total=summary.n_bytes, files=0)

        def on_file(planned, written):
            progress.update(task, advance=planned.size, files=progress.tasks[task].fields["files"] + 1)

        report = generate(plan.files(), out_dir, workers=workers, on_file=on_file)
    rate = report.bytes_written / report.seconds / 1e6 if report.seconds else 0.0
    out.print(f"wrote {report.written:,} files ({human_bytes(report.bytes_written)}) at {rate:.0f} MB/s; "
              f"skipped {report.skipped:,} already complete ({human_bytes(report.bytes_skipped)}) in {out_dir}")
