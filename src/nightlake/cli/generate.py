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
from nightlake.flows.generate import generate, write_triggered
from nightlake.night.plan import Plan, summarize
from nightlake.night.spec import human_bytes, load_spec


@click.command("generate")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), callback=directory_to_make,
              help="Directory to write into.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Parallel writers (default: CPUs, at most 8).")
@click.option("--rate", type=click.FloatRange(0.1), default=None, metavar="FILES_PER_S",
              help="Write one file after another at this rate, each followed by its `<file>.trigger`, and "
                   "`<dataset>.end` after a dataset's last file: an on-site writer, for `nightlake daemon`.")
def generate_cmd(spec: str, out_dir: str, workers: int | None, rate: float | None) -> None:
    """Write SPEC's files under OUT/<dataset>/<file> (valid FITS, deterministic; re-run resumes)."""
    plan = Plan(load_spec(spec))
    if rate:
        written = write_triggered(plan.files(), out_dir, rate, end_markers=True)
        out.print(f"wrote {written:,} files with their triggers at up to {rate:g} files/s in {out_dir}")
        return
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
