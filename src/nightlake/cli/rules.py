"""`nightlake rules add | watch RUNDIR`: put replication rules on a run's datasets and follow them."""

from __future__ import annotations

from pathlib import Path

import click
from rich.live import Live
from rich.table import Table

from nightlake.cli.common import metrics_port, parse_policy, patience
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.flows.rules import RuleStatus, WatchResult, by_expression
from nightlake.flows.session import open_catalog
from nightlake.observe import metrics
from nightlake.observe.events import EventBus, EventLog, Kind
from nightlake.runs.rundir import INGEST, RunDir


@click.group("rules")
def rules() -> None:
    """Add replication rules to a run's datasets, watch them, and classify their errors."""


@rules.command("add")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rule", "texts", multiple=True, required=True,
              help="EXPR[,copies=N][,lifetime=S][,activity=A][,source=EXPR]. Repeatable.")
def add_cmd(run_dir: Path, texts: tuple[str, ...]) -> None:
    """One rule per dataset and --rule; an identical existing rule is reused, not duplicated."""
    from nightlake.flows.rules import add_rules

    policies = [parse_policy(t) for t in texts]
    run = RunDir(run_dir)
    bus = EventBus()
    with run.load(INGEST, writable=True) as journal, EventLog(run.events) as log:
        bus.subscribe(log)
        bus.subscribe(lambda e: e.kind != Kind.RULE_ADDED or out.print(
            f"{'existing' if e.fields['existed'] else 'added'} rule {e.fields['rule_id']}: "
            f"{e.fields['dataset']} → {e.fields['rse_expression']}"))
        add_rules(journal, open_catalog(bus), policies, bus)


@rules.command("watch")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--timeout", type=click.FloatRange(0), default=600, show_default=True,
              help="Seconds to wait for every rule to be OK or STUCK.")
@click.option("--interval", type=click.FloatRange(0.1), default=5, show_default=True, help="Seconds between polls.")
@patience
@metrics_port
def watch_cmd(run_dir: Path, timeout: float, interval: float, patience: float, metrics_port: int | None) -> None:
    """Follow the run's rules until all are OK or STUCK (exit 0 if all OK, 1 otherwise)."""
    from nightlake.flows.rules import run_rules, watch

    run = RunDir(run_dir)
    with run.load(INGEST) as journal:
        tracked = run_rules(journal)
    bus = EventBus()
    with EventLog(run.events) as log, metrics.serving(metrics_port, bus):
        bus.subscribe(log)
        catalog = open_catalog(bus, patience)
        if console.is_terminal:
            with Live(progress_table([]), console=console, auto_refresh=False) as live:
                result = watch(catalog, tracked, bus, timeout, interval,
                               on_poll=lambda s: live.update(progress_table(s), refresh=True))
        else:
            result = watch(catalog, tracked, bus, timeout, interval, on_poll=PlainProgress())
    print_result(result)
    raise click.exceptions.Exit(result.exit_code)


def progress_table(statuses: list[RuleStatus]) -> Table:
    """Per rule, then per RSE expression: locks OK / replicating / stuck."""
    table = Table(title="replication rules")
    for column in ("rule", "dataset", "RSE expression", "state", "ok", "replicating", "stuck"):
        table.add_column(column, justify="right" if column in ("ok", "replicating", "stuck") else "left")
    for s in statuses:
        table.add_row(s.rule_id[:8], s.dataset, s.rse_expression, _state(s.state), str(s.ok),
                      str(s.replicating), str(s.stuck))
    for expression, (ok, replicating, stuck) in by_expression(statuses).items():
        table.add_row("[bold]all", f"{sum(1 for s in statuses if s.rse_expression == expression)} rule(s)",
                      expression, "", str(ok), str(replicating), str(stuck), style="bold")
    return table


class PlainProgress:
    """Without a terminal: one line per rule whenever its state or counts change."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple] = {}

    def __call__(self, statuses: list[RuleStatus]) -> None:
        for s in statuses:
            key = (s.state, s.ok, s.replicating, s.stuck)
            if self._seen.get(s.rule_id) != key:
                self._seen[s.rule_id] = key
                console.print(f"rule {s.rule_id} {s.dataset} → {s.rse_expression}: {s.state} "
                              f"ok={s.ok} replicating={s.replicating} stuck={s.stuck}", markup=False)


def print_result(result: WatchResult) -> None:
    """Which rules are not OK and why: Rucio's messages are printed as they are (no markup)."""
    ok = sum(1 for s in result.statuses if s.state == "OK")
    out.print(f"{ok} of {len(result.statuses)} rules OK, {len(result.stuck)} STUCK, "
              f"{len(result.gone)} gone, {len(result.unsettled)} not settled"
              f"{' (timeout)' if result.timed_out else ''}")
    for s in result.stuck:
        out.print(f"STUCK {s.rule_id} {s.dataset} → {s.rse_expression}: {s.stuck} stuck locks; "
                  f"{s.error or 'Rucio recorded no error'}", markup=False)
    for s in result.gone:
        out.print(f"GONE {s.rule_id} {s.dataset} → {s.rse_expression}: {s.error}", markup=False)
    for s in result.unsettled:
        out.print(f"still {s.state} {s.rule_id} {s.dataset} → {s.rse_expression}: "
                  f"ok={s.ok} replicating={s.replicating} stuck={s.stuck}")
    for error in result.errors:
        out.print(f"error [{error.group}] × {error.count}: {error.sample}", markup=False)


def _state(state: str) -> str:
    color = {"OK": "green", "STUCK": "red"}.get(state, "yellow")
    return f"[{color}]{state}[/]"
