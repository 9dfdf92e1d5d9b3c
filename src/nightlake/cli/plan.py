"""`nightlake plan` and `nightlake generate`: show a night spec as a document, then write it out.

Both only call into `spec`, `plan` and `generate`; `plan` touches no disk, storage or Rucio.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from nightlake.cli.console import out
from nightlake.night.plan import (
    DEFAULT_FILES_PER_S,
    DEFAULT_MB_PER_S,
    NIGHT_HOURS,
    Plan,
    Summary,
    summarize,
)
from nightlake.night.spec import human_bytes, load_spec

_rate = click.FloatRange(min=0, min_open=True)


@click.command("plan")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--files-per-s", type=_rate, default=DEFAULT_FILES_PER_S, show_default=True,
              help="Ingest rate in files per second, for the time estimate.")
@click.option("--mb-per-s", type=_rate, default=DEFAULT_MB_PER_S, show_default=True,
              help="Ingest rate in MB/s (10^6 bytes), for the time estimate.")
def plan_cmd(spec: str, as_json: bool, files_per_s: float, mb_per_s: float) -> None:
    """Dry run: what SPEC will produce (datasets, files, bytes, sizes, Rucio calls, time)."""
    summary = summarize(Plan(load_spec(spec)))
    doc = summary.to_dict(files_per_s, mb_per_s)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_plan(out, summary, doc)


def _print_plan(console: Console, summary: Summary, doc: dict) -> None:
    spec = summary.spec
    night = Table(title=f"Night {doc['site']} {doc['date']}", show_header=False)
    for key, value in [("scope", doc["scope"]), ("seed", doc["seed"]),
                       ("telescopes", len(spec.night.telescopes)), ("datasets", f"{doc['datasets']:,}"),
                       ("files", f"{doc['files']:,}"), ("bytes", f"{human_bytes(doc['bytes'])} ({doc['bytes']:,} B)"),
                       ("file size min / mean / max", " / ".join(human_bytes(doc["file_size"][k])
                                                                 for k in ("min", "mean", "max")))]:
        night.add_row(key, str(value))
    console.print(night)

    hist = Table(title="File sizes (written bytes, FITS blocks of 2880)")
    hist.add_column("size from"), hist.add_column("to"), hist.add_column("files", justify="right")
    hist.add_column("")
    peak = max((b["files"] for b in doc["histogram"]), default=1)
    for b in doc["histogram"]:
        hist.add_row(human_bytes(b["min"]), human_bytes(b["max"]), f"{b['files']:,}",
                     "█" * max(1, round(40 * b["files"] / peak)))
    console.print(hist)

    calls = Table(title=f"Rucio calls (at most {doc['rucio_calls']['batch_size']} items per call)")
    calls.add_column("call"), calls.add_column("count", justify="right")
    for name, count in doc["rucio_calls"].items():
        if name != "batch_size":
            calls.add_row(name, f"{count:,}")
    console.print(calls)

    if doc["rules"]:
        rules = Table(title="Replication rules (per dataset)")
        for col in ("copies", "rse_expression", "lifetime", "activity"):
            rules.add_column(col)
        for r in doc["rules"]:
            rules.add_row(*(str(r.get(c, "-")) for c in ("copies", "rse_expression", "lifetime", "activity")))
        console.print(rules)

    t, need = doc["time"], doc["required"]
    verdict = "[green]fits[/]" if t["within_night"] else "[red]does not fit[/]"
    console.print(f"At {t['files_per_s']:g} files/s and {t['mb_per_s']:g} MB/s the night takes "
                  f"{_hms(t['seconds'])} (limited by {t['limited_by']}): {verdict} in {NIGHT_HOURS} h.")
    console.print(f"Needed to finish within {NIGHT_HOURS} h: {need['files_per_s']:.2f} files/s and "
                  f"{need['mb_per_s']:.1f} MB/s.")


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
