"""Replication rules of a run: add them from a policy, then follow them until Rucio settles.

`add_rules` puts one rule per (dataset, policy) on a run's datasets, journaled the way the ingest
journals them, and through the catalog's idempotent `ensure_rule`, so running it twice adds none.

`watch` polls each rule with one `get_replication_rule` call (rules are per dataset: hundreds per
night, never per file) until every rule is OK or STUCK, or the time is up. A rule is *settled*
when OK or STUCK, or GONE: deleted or expired since the run recorded it.

`harvest` explains STUCK rules. Rucio keeps the last transfer error in the rule's `error` (the
finisher writes e.g. "RequestErrMsg.NO_SOURCES:RequestState.NO_SOURCES", or the FTS message);
`examine_replication_rule` adds, per stuck lock, the state of its last request. Each stuck lock
counts once, under the group `failures.replication_error_group` gives its message.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.failures import replication_error_group
from nightlake.catalog.rules import RulePolicy
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.ingest import IngestJournal

GONE = "GONE"  # Rucio no longer has the rule: deleted, or expired and cleaned
SETTLED = ("OK", "STUCK", GONE)
NO_ERROR_RECORDED = "STUCK, but Rucio recorded no error"


# --- add ------------------------------------------------------------------------------------------

def add_rules(journal: IngestJournal, catalog: Catalog, policies: Sequence[RulePolicy], bus: EventBus) -> list[dict]:
    """Every policy on every dataset of the run, journaled; returns the journal's rules afterwards."""
    catalog.check_expressions(e for p in policies for e in (p.rse_expression, p.source_replica_expression))
    for scope, name, _ in journal.datasets():
        for policy in policies:
            journal.add_rule(scope, name, policy.rse_expression, policy.copies, policy.lifetime, policy.activity)
            rule_id, existed = catalog.ensure_rule((scope, name), policy)
            journal.mark_rule(scope, name, policy.rse_expression, rule_id)
            bus.emit(Kind.RULE_ADDED, dataset=f"{scope}:{name}", rule_id=rule_id,
                     rse_expression=policy.rse_expression, existed=existed)
    return journal.rules()


# --- watch ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleStatus:
    """One rule as Rucio reports it: state and lock counts (OK / replicating / stuck)."""

    rule_id: str
    dataset: str
    rse_expression: str
    state: str
    ok: int
    replicating: int
    stuck: int
    error: str | None = None

    @property
    def settled(self) -> bool:
        return self.state in SETTLED


@dataclass(frozen=True)
class ErrorGroup:
    group: str
    count: int  # stuck locks whose error falls in this group
    sample: str


@dataclass(frozen=True)
class WatchResult:
    statuses: list[RuleStatus]
    errors: list[ErrorGroup]
    timed_out: bool

    @property
    def stuck(self) -> list[RuleStatus]:
        return [s for s in self.statuses if s.state == "STUCK"]

    @property
    def unsettled(self) -> list[RuleStatus]:
        return [s for s in self.statuses if not s.settled]

    @property
    def gone(self) -> list[RuleStatus]:
        return [s for s in self.statuses if s.state == GONE]

    @property
    def exit_code(self) -> int:
        """0 when every rule is OK; 1 when one is STUCK, GONE or still moving at the timeout."""
        return 0 if all(s.state == "OK" for s in self.statuses) else 1


def run_rules(journal: IngestJournal) -> list[dict]:
    """The journal's rules that Rucio knows (have an id)."""
    rules = [r for r in journal.rules() if r["rule_id"]]
    if not rules:
        raise BadInput("the run has no replication rules yet; add some with `nightlake rules add`")
    return rules


def poll(catalog: Catalog, rules: Iterable[dict]) -> list[RuleStatus]:
    """One `get_replication_rule` call per rule."""
    statuses = []
    for rule in rules:
        where = (rule["rule_id"], f"{rule['scope']}:{rule['dataset']}", rule["rse_expression"])
        if (info := catalog.rule(rule["rule_id"])) is None:
            statuses.append(RuleStatus(*where, GONE, 0, 0, 0, "Rucio has no rule with this id any more"))
            continue
        statuses.append(RuleStatus(*where, info["state"], info["locks_ok_cnt"], info["locks_replicating_cnt"],
                                   info["locks_stuck_cnt"], info.get("error")))
    return statuses


def watch(catalog: Catalog, rules: Sequence[dict], bus: EventBus, timeout: float, interval: float,
          on_poll: Callable[[list[RuleStatus]], None] = lambda statuses: None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> WatchResult:
    """Poll until every rule is settled or `timeout` seconds have passed, then harvest the errors."""
    deadline = clock() + timeout
    while True:
        statuses = poll(catalog, rules)
        for s in statuses:
            bus.emit(Kind.RULES_PROGRESS, rule_id=s.rule_id, dataset=s.dataset, rse_expression=s.rse_expression,
                     state=s.state, ok=s.ok, replicating=s.replicating, stuck=s.stuck)
        on_poll(statuses)
        settled = all(s.settled for s in statuses)
        if settled or clock() >= deadline:
            break
        sleep(max(0.0, min(interval, deadline - clock())))
    errors = group_errors(harvest(catalog, statuses))
    for error in errors:
        bus.emit(Kind.REPLICATION_ERROR, group=error.group, count=error.count, sample=error.sample)
    return WatchResult(statuses, errors, timed_out=not settled)


def harvest(catalog: Catalog, statuses: Iterable[RuleStatus]) -> list[tuple[str, int]]:
    """(message, stuck locks) for every rule with stuck locks: one `examine_replication_rule` call
    per STUCK rule; a rule still replicating with some stuck locks only has its `error` field."""
    found: list[tuple[str, int]] = []
    for s in statuses:
        if not s.stuck:
            continue
        if s.state != "STUCK":
            found.append((s.error or NO_ERROR_RECORDED, s.stuck))
            continue
        analysis = catalog.examine_rule(s.rule_id)
        transfers = analysis.get("transfers") or []
        found += [(lock_message(s.error, t), 1) for t in transfers]
        if len(transfers) < s.stuck:
            found.append((s.error or NO_ERROR_RECORDED, s.stuck - len(transfers)))
    return found


def lock_message(rule_error: str | None, transfer: dict[str, Any]) -> str:
    """The rule's error carries the transfer tool's text; the lock's last request state (e.g.
    RequestState.NO_SOURCES) is the fallback. Rucio lists a lock's available sources only once it
    had a request, so "no source replica" is said only then."""
    last_request = transfer.get("last_error")
    message = rule_error or (str(last_request) if last_request not in (None, "None") else NO_ERROR_RECORDED)
    if transfer.get("attempts") and not transfer.get("sources"):
        message += "; no source replica available"
    return message


def group_errors(messages: Iterable[tuple[str, int]]) -> list[ErrorGroup]:
    """Counts per error group, largest first, each with its first message as the sample."""
    counts: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for message, count in messages:
        group = replication_error_group(message)
        counts[group] += count
        samples.setdefault(group, message)
    return [ErrorGroup(group, count, samples[group]) for group, count in counts.most_common()]


def by_expression(statuses: Iterable[RuleStatus]) -> dict[str, tuple[int, int, int]]:
    """Lock counts (ok, replicating, stuck) summed per RSE expression: the per-destination view."""
    totals: dict[str, tuple[int, int, int]] = {}
    for s in statuses:
        ok, replicating, stuck = totals.get(s.rse_expression, (0, 0, 0))
        totals[s.rse_expression] = (ok + s.ok, replicating + s.replicating, stuck + s.stuck)
    return totals
