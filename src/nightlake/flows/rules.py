"""Replication rules of a run: add them from a policy, then follow them until Rucio settles.

`add_rules` puts one rule per (dataset, policy) on a run's datasets, journaled the way the ingest
journals them, and through the catalog's idempotent `ensure_rule`, so running it twice adds none.

`watch` follows the run's rules until every one is settled, or the time is up. A poll costs
one streamed `list_replication_rules` (this account's rules created since the run began: a
whole night's rules in one call; a rule it does not list is looked up alone, and is GONE when
Rucio no longer has it) and one `list_requests` per pair of RSEs into a destination of the run's
rules (queued, active and failed transfers): a number of calls that grows with the RSEs, never
with the files or the datasets. A rule is *settled* when OK, GONE, or STUCK with no lock left
replicating and no source copy on its way (`chained`). When the watch ends, `rule_errors.harvest`
explains the stuck locks file by file, and `rule_errors.failed_attempts` the failures of the rules
still moving (their stuck locks re-queued by the judge-repairer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.rules import RulePolicy
from nightlake.flows.rule_errors import ErrorGroup, failed_attempts, group_errors, harvest
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.ingest import IngestJournal

GONE = "GONE"  # Rucio no longer has the rule: deleted, or expired and cleaned
SETTLED = ("OK", "STUCK", GONE)
CLOCK_MARGIN_S = 3600  # rules are listed from an hour before the run began: the server's clock may differ
ACTIVE, QUEUED = frozenset("SG"), frozenset("QWP")  # RequestState: at the transfer tool; not yet
LIVE_STATES = "Q,W,P,G,S,F,L,N,A,M,O"  # every state a live request can be in (Rucio's one-letter values)


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


def retry_stuck(catalog: Catalog, rules: Sequence[dict]) -> list[str]:
    """The run's STUCK rules boosted, so the judge-repairer retries their locks on its next pass;
    returns their ids."""
    stuck = [r["rule_id"] for r in rules if (catalog.rule(r["rule_id"]) or {}).get("state") == "STUCK"]
    for rule_id in stuck:
        catalog.boost_rule(rule_id)
    return stuck


def await_repairer(catalog: Catalog, rule_ids: Sequence[str], timeout: float, interval: float = 2.0,
                   clock=time.monotonic, sleep=time.sleep) -> list[str]:
    """A boosted rule stays STUCK until the judge-repairer's next pass takes it up, so a `rules watch`
    started at once would see it settled and stop. Waits (one call per rule per poll; rules are per
    dataset, not per file) until none is STUCK any more or `timeout` passes; returns those still STUCK."""
    waiting, deadline = list(rule_ids), clock() + timeout
    while waiting:
        waiting = [r for r in waiting if (catalog.rule(r) or {}).get("state") == "STUCK"]
        if not waiting or clock() >= deadline:
            break
        sleep(interval)
    return waiting


# --- watch ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleStatus:
    """One rule as Rucio reports it: state, lock counts (OK / replicating / stuck), and the bytes
    its locks stand for (the dataset's bytes times the copies; OK bytes in proportion of OK locks)."""

    rule_id: str
    dataset: str
    rse_expression: str
    state: str
    ok: int
    replicating: int
    stuck: int
    error: str | None = None
    bytes: int = 0
    waiting: bool = False  # STUCK for want of its source copy, which another rule is making

    @property
    def settled(self) -> bool:
        """Rucio calls a rule STUCK at its first stuck lock; it is settled once none is replicating,
        and not while it waits for its source copy (the judge-repairer will take it up)."""
        return self.state in SETTLED and not (self.state == "STUCK" and (self.replicating or self.waiting))

    @property
    def bytes_ok(self) -> int:
        locks = self.ok + self.replicating + self.stuck
        return self.bytes * self.ok // locks if locks else 0


@dataclass(frozen=True)
class Destination:
    """One RSE expression of the run's rules at one poll: files and bytes replicated, and the
    transfers behind the replicating locks: `active` at the transfer tool, `failed` waiting for
    the finisher, `queued` the rest (not handed to the transfer tool yet)."""

    rse_expression: str
    rules: int
    files: int  # locks: files times copies
    ok: int
    replicating: int
    stuck: int
    bytes: int
    bytes_ok: int
    queued: int = 0
    active: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Poll:
    """What one poll saw."""

    statuses: list[RuleStatus]
    destinations: list[Destination] = field(default_factory=list)


@dataclass(frozen=True)
class WatchResult:
    statuses: list[RuleStatus]
    errors: list[ErrorGroup]
    timed_out: bool

    @property
    def stuck(self) -> list[RuleStatus]:
        return [s for s in self.statuses if s.state == "STUCK" and s.settled]

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
    """The journal's rules that Rucio knows (have an id), each with its dataset's bytes."""
    rules = [r for r in journal.rules() if r["rule_id"]]
    if not rules:
        raise BadInput("the run has no replication rules yet; add some with `nightlake rules add`")
    sizes: dict[tuple[str, str], int] = {}
    for scope, dataset, _, _, size in journal.per_state_by("scope, dataset"):
        sizes[(scope, dataset)] = sizes.get((scope, dataset), 0) + size
    return [{**r, "bytes": sizes.get((r["scope"], r["dataset"]), 0) * r["copies"]} for r in rules]


def listed_since(journal: IngestJournal) -> datetime:
    """Where `list_replication_rules` starts for this run: its rules were made after the journal."""
    return datetime.fromtimestamp(journal.run_meta()["created_at"] - CLOCK_MARGIN_S, UTC)


def poll(catalog: Catalog, rules: Iterable[dict], since: datetime) -> list[RuleStatus]:
    """Every rule's state from one `list_replication_rules`; one not listed (made before the run,
    or gone) is asked for alone."""
    listed = catalog.account_rules(since)
    statuses = []
    for rule in rules:
        where = (rule["rule_id"], f"{rule['scope']}:{rule['dataset']}", rule["rse_expression"])
        info = listed.get(rule["rule_id"]) or catalog.rule(rule["rule_id"])
        if info is None:
            statuses.append(RuleStatus(*where, GONE, 0, 0, 0, "Rucio has no rule with this id any more"))
            continue
        statuses.append(RuleStatus(*where, info["state"], info["locks_ok_cnt"], info["locks_replicating_cnt"],
                                   info["locks_stuck_cnt"], info.get("error"), rule.get("bytes", 0),
                                   waiting=bool(info.get("source_replica_expression"))))
    return chained(statuses)


def chained(statuses: list[RuleStatus]) -> list[RuleStatus]:
    """CTAO's second rule (more copies, `source=` off-site) is STUCK until the first rule's copy
    exists and the judge-repairer retries it: it waits while another rule of its dataset is OK or
    replicating, and is stuck for good when none is."""
    making = {s.dataset for s in statuses if s.state in ("OK", "REPLICATING")}
    return [replace(s, waiting=s.waiting and s.state == "STUCK" and s.dataset in making) for s in statuses]


def request_counts(catalog: Catalog, statuses: Sequence[RuleStatus],
                   destinations: dict[str, list[str]], sources: list[str]) -> dict[str, dict[str, int]]:
    """{RSE expression: {"active": n, "failed": n}} of the live requests of these rules, one
    `list_requests` per (source, destination) pair."""
    expression_of = {s.rule_id: s.rse_expression for s in statuses if not s.settled}
    counts = {e: {"active": 0, "failed": 0} for e in destinations}
    for destination in sorted({rse for rses in destinations.values() for rse in rses}):
        for source in (s for s in sources if s != destination):
            for request in catalog.transfer_requests(source, destination, LIVE_STATES):
                if (expression := expression_of.get(request.get("rule_id"))) is None:
                    continue
                state = str(request.get("state", ""))[:1]
                if state in ACTIVE:
                    counts[expression]["active"] += 1
                elif state not in QUEUED:
                    counts[expression]["failed"] += 1
    return counts


def by_destination(statuses: Iterable[RuleStatus],
                   requests: dict[str, dict[str, int]] | None = None) -> list[Destination]:
    """The rules summed per RSE expression: the per-destination view."""
    totals: dict[str, Destination] = {}
    for s in statuses:
        d = totals.get(s.rse_expression) or Destination(s.rse_expression, 0, 0, 0, 0, 0, 0, 0)
        totals[s.rse_expression] = replace(
            d, rules=d.rules + 1, files=d.files + s.ok + s.replicating + s.stuck, ok=d.ok + s.ok,
            replicating=d.replicating + s.replicating, stuck=d.stuck + s.stuck, bytes=d.bytes + s.bytes,
            bytes_ok=d.bytes_ok + s.bytes_ok)
    out = []
    for expression, d in totals.items():
        seen = (requests or {}).get(expression, {})
        active, failed = seen.get("active", 0), seen.get("failed", 0)
        out.append(replace(d, active=active, failed=failed, queued=max(0, d.replicating - active - failed)))
    return out


def watch(catalog: Catalog, rules: Sequence[dict], bus: EventBus, timeout: float, interval: float,
          since: datetime, on_poll: Callable[[Poll], None] = lambda seen: None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> WatchResult:
    """Poll until every rule is settled or `timeout` seconds have passed, then harvest the errors."""
    deadline = clock() + timeout
    destinations = {e: catalog.rse_names(e) for e in sorted({r["rse_expression"] for r in rules})}
    sources = catalog.rse_names()
    reported: dict[str, tuple] = {}
    while True:
        statuses = poll(catalog, rules, since)
        seen = Poll(statuses, by_destination(statuses, request_counts(catalog, statuses, destinations, sources)))
        report(bus, seen, reported)
        on_poll(seen)
        settled = all(s.settled for s in statuses)
        if settled or clock() >= deadline:
            break
        sleep(max(0.0, min(interval, deadline - clock())))
    moving = [s for s in statuses if not s.settled]
    pairs = {(source, rse) for s in moving for rse in destinations[s.rse_expression] for source in sources
             if source != rse}
    errors = group_errors(harvest(catalog, statuses)) + \
        group_errors(failed_attempts(catalog, {s.rule_id for s in moving}, pairs), retrying=True)
    for error in errors:
        bus.emit(Kind.REPLICATION_ERROR, group=error.group, count=error.count, rses=list(error.rses),
                 sample=error.sample, retrying=error.retrying)
    return WatchResult(statuses, errors, timed_out=not settled)


def report(bus: EventBus, seen: Poll, reported: dict[str, tuple]) -> None:
    """A poll into the event log: each rule when it changed (`rules.progress`; the report keeps
    each rule's latest), and every destination (`replication.progress`)."""
    for s in seen.statuses:
        key = (s.state, s.ok, s.replicating, s.stuck)
        if reported.get(s.rule_id) != key:
            reported[s.rule_id] = key
            bus.emit(Kind.RULES_PROGRESS, rule_id=s.rule_id, dataset=s.dataset, rse_expression=s.rse_expression,
                     state=s.state, ok=s.ok, replicating=s.replicating, stuck=s.stuck)
    for d in seen.destinations:
        bus.emit(Kind.REPLICATION_PROGRESS, rse_expression=d.rse_expression, rules=d.rules, files=d.files,
                 ok=d.ok, replicating=d.replicating, stuck=d.stuck, bytes=d.bytes, bytes_ok=d.bytes_ok,
                 queued=d.queued, active=d.active, failed=d.failed)
