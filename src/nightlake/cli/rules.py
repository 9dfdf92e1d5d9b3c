"""`nightlake rules add | watch RUNDIR`: put replication rules on a run's datasets and follow them."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.live import Live
from rich.table import Table

from nightlake.cli.common import metrics_port, parse_policy, patience
from nightlake.cli.console import err as console
from nightlake.cli.console import out
from nightlake.cli.progress import ReplicationRates
from nightlake.flows.rules import Poll, WatchResult
from nightlake.flows.session import open_catalog
from nightlake.night.spec import human_bytes
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
    from nightlake.flows.rules import listed_since, run_rules, watch

    run = RunDir(run_dir)
    with run.load(INGEST) as journal:
        tracked, since = run_rules(journal), listed_since(journal)
    bus = EventBus()
    with EventLog(run.events) as log, metrics.serving(metrics_port, bus):
        bus.subscribe(log)
        catalog = open_catalog(bus, patience)
        rates = ReplicationRates()
        if console.is_terminal:
            with Live(progress_table(Poll([]), rates), console=console, auto_refresh=False) as live:
                result = watch(catalog, tracked, bus, timeout, interval, since,
                               on_poll=lambda seen: live.update(progress_table(seen, rates), refresh=True))
        else:
            result = watch(catalog, tracked, bus, timeout, interval, since, on_poll=PlainProgress(rates))
    print_result(result)
    raise click.exceptions.Exit(result.exit_code)


@rules.command("retry")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--wait", type=click.FloatRange(0), default=300, show_default=True,
              help="Seconds to wait for the judge-repairer to take the rules up (0: do not wait).")
def retry_cmd(run_dir: Path, wait: float) -> None:
    """Have Rucio retry the run's STUCK rules now (once the cause is fixed), not hours later.

    A boosted rule is STUCK until the judge-repairer's next pass, so by default this waits for that
    pass: a `rules watch` after it follows the retried transfers instead of stopping at once."""
    from nightlake.flows.rules import await_repairer, retry_stuck, run_rules

    run = RunDir(run_dir)
    with run.load(INGEST) as journal:
        tracked = run_rules(journal)
    catalog = open_catalog(EventBus())
    boosted = retry_stuck(catalog, tracked)
    for rule_id in boosted:
        out.print(f"retrying STUCK rule {rule_id}")
    if not boosted or not wait:
        return
    still = await_repairer(catalog, boosted, wait)
    if still:
        console.print(f"the judge-repairer has not taken up {len(still)} of {len(boosted)} rules in "
                      f"{wait:g} s (is rucio-judge-repairer running?): {', '.join(still)}", markup=False)
        raise click.exceptions.Exit(1)
    out.print("the judge-repairer has taken up the retried rules")


def progress_table(seen: Poll, rates: ReplicationRates) -> Table:
    """Per destination (RSE expression): files and bytes replicated, rate, requests, ETA."""
    rates.update(seen.destinations)
    table = Table(title="replication, per destination")
    columns = ("RSE expression", "rules", "files ok", "bytes ok", "files/s", "MB/s", "queued", "active",
               "failed", "stuck", "ETA")
    for column in columns:
        table.add_column(column, justify="left" if column == "RSE expression" else "right")
    for d in seen.destinations:
        files_per_s, mb_per_s, eta = rates.of(d)
        table.add_row(d.rse_expression, str(d.rules), f"{d.ok:,}/{d.files:,}",
                      f"{human_bytes(d.bytes_ok)}/{human_bytes(d.bytes)}", f"{files_per_s:.1f}", f"{mb_per_s:.1f}",
                      str(d.queued), str(d.active), str(d.failed), _stuck(d.stuck), _eta(eta))
    return table


class PlainProgress:
    """Without a terminal: one line per destination every 30 s, and at once when a rule settles."""

    def __init__(self, rates: ReplicationRates, every: float = 30.0) -> None:
        self.rates, self.every = rates, every
        self._last = float("-inf")
        self._settled: set[str] = set()

    def __call__(self, seen: Poll) -> None:
        self.rates.update(seen.destinations)
        newly = [s for s in seen.statuses if s.settled and s.rule_id not in self._settled]
        self._settled |= {s.rule_id for s in newly}
        for s in newly:
            console.print(f"rule {s.rule_id} {s.dataset} → {s.rse_expression}: {s.state}", markup=False)
        now = self.rates.clock()
        if now - self._last < self.every:
            return
        self._last = now
        for d in seen.destinations:
            files_per_s, mb_per_s, eta = self.rates.of(d)
            console.print(f"{time.strftime('%H:%M:%S')} {d.rse_expression}: {d.ok:,}/{d.files:,} files, "
                          f"{human_bytes(d.bytes_ok)}/{human_bytes(d.bytes)}; {files_per_s:.1f} files/s, "
                          f"{mb_per_s:.1f} MB/s; requests queued {d.queued}, active {d.active}, failed "
                          f"{d.failed}; stuck {d.stuck}; ETA {_eta(eta)}", markup=False)


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
                  f"ok={s.ok} replicating={s.replicating} stuck={s.stuck}"
                  f"{' (waiting for its source copy)' if s.waiting else ''}")
    for error in result.errors:
        what = "failing, being retried:" if error.retrying else "error"
        out.print(f"{what} [{error.group}] × {error.count} at {', '.join(error.rses)}: {error.sample}", markup=False)


def _stuck(count: int) -> str:
    return f"[red]{count}[/]" if count else "0"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
