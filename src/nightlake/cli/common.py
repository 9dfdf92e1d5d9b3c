"""What several commands share, so that they read and behave the same everywhere: options, the
--rule syntax, progress while a run goes on, its summary, and how it ends (exit codes, metrics)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from nightlake import BadInput
from nightlake.catalog.retry import GaveUp, ServiceDown
from nightlake.catalog.rules import RulePolicy
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.flows.session import DEFAULT_PATIENCE
from nightlake.night.spec import human_bytes
from nightlake.observe import metrics
from nightlake.observe.events import EventBus
from nightlake.runs.rundir import RunDir

patience = click.option(
    "--patience", type=click.FloatRange(0), default=DEFAULT_PATIENCE, show_default=True, metavar="SECONDS",
    help="Ride through an outage of the Rucio server or an RSE that lasts up to this long (0: stop at once).")
metrics_port = click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT while the command runs.")


def directory_to_make(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback for a directory a command creates (--run, --out): it, or its nearest
    existing ancestor, must be a directory. A path under a regular file would otherwise fail
    deep inside the command with a traceback (NotADirectoryError), after other work."""
    if value is None:
        return value
    path = Path(value)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise BadInput(f"{param.opts[-1]} {value}: {existing} is not a directory")
    return value


OPTIONS = {"copies": int, "lifetime": int, "activity": str, "source": str}


def parse_policy(text: str) -> RulePolicy:
    """`EXPR[,copies=N][,lifetime=S][,activity=A][,source=EXPR]` (RSE expressions have no commas);
    `source` is Rucio's source_replica_expression. Ranges are the night spec's (`spec.Rule`)."""
    from pydantic import ValidationError

    from nightlake.night.spec import Rule

    expression, *options = [part.strip() for part in text.split(",")]
    fields: dict = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in OPTIONS or not value or key in fields:
            raise BadInput(f"--rule {text!r}: bad option {option!r} "
                           "(copies=, lifetime=, activity=, source=, each at most once)")
        try:
            fields[key] = OPTIONS[key](value)
        except ValueError:
            raise BadInput(f"--rule {text!r}: {key} must be an integer, got {value!r}") from None
    source = fields.pop("source", None)
    try:
        rule = Rule.model_validate({"rse_expression": expression, **fields})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise BadInput(f"--rule {text!r}: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    return RulePolicy(rule.rse_expression, rule.copies, rule.lifetime, rule.activity, source)


def stopped_message(exc: GaveUp) -> str:
    """The one line for a command that a service stopped: which service, where, and what to do."""
    from nightlake.catalog.client import rucio_host

    where = f" ({rucio_host()})" if exc.target == "catalog" else ""
    how = f"still down after {exc.patience:.0f} s of patience" if isinstance(exc, ServiceDown) else \
        f"{exc.classified.error_class.value} after {exc.attempts} attempt(s)"
    return f"{exc.target}{where}: {how}: {exc.classified.message} Re-run the same command to resume."


def finish_run(run: Callable[[EventBus], dict], metrics_port: int | None,
               print_summary: Callable[[dict], None]) -> None:
    """Run a journaled command: metrics while it runs, the summary printed, exit 1 unless every
    file is done. A refused credential or a service that stayed down ends it in `main`."""
    bus = EventBus()
    with metrics.serving(metrics_port, bus):
        summary = run(bus)
    print_summary(summary)
    if not summary["complete"]:
        raise click.exceptions.Exit(1)


def run_with_progress(run: Callable[[EventBus], dict], bus: EventBus, quiet: bool, verb: str) -> dict:
    """Bars in a terminal, a line every half minute in a log; nothing with --quiet or --json."""
    from nightlake.cli.progress import ProgressLog, RunProgress

    if quiet:
        return run(bus)
    if not console.is_terminal:
        bus.subscribe(ProgressLog(console, verb))
        return run(bus)
    with RunProgress(console, verb) as progress:
        bus.subscribe(progress)
        return run(bus)


def print_summary(summary: dict, title: str, rows: list[tuple[str, str]], run_dir: Path, as_json: bool) -> None:
    """A run's last lines: its table, the first problems with their original message, and where
    the rest are listed."""
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    table = Table(show_header=False)
    for row in rows:
        table.add_row(*row)
    if summary.get("elapsed_s"):
        table.add_row("this run", f"{summary['elapsed_s']:.1f} s")
    out.print(title, markup=False)
    out.print(table)
    for problem in summary["problems"][:5]:
        console.print(f"[red]{problem['state']}[/] {problem['did']}: "
                      + escape(f"[{problem['error_class']}] {problem['message']}"))
    if summary["problems"]:
        console.print(f"all problems: {RunDir(run_dir).summary}")


def done_rows(summary: dict) -> list[tuple[str, str]]:
    """The rows every run summary starts with: files and bytes done."""
    files, size = summary["files"], summary["bytes"]
    return [("files done", f"{files['done']} / {files['total']}"),
            ("bytes done", f"{human_bytes(size['done'])} of {human_bytes(size['total'])}")]
