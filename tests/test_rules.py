"""Rules without a lake: policy parsing, idempotent adds, the watch loop, its cost in Rucio calls,
the per-destination view and error grouping, against a fake Rucio client that answers as
rucio-clients 41.5.1 does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rucio.common import exception as rucio_exc

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.failures import replication_error_group
from nightlake.catalog.retry import RetryPolicy
from nightlake.catalog.rules import RulePolicy
from nightlake.cli.common import parse_policy
from nightlake.flows.rule_errors import NO_ERROR_RECORDED, StuckLock, group_errors, harvest, lock_message
from nightlake.flows.rules import RuleStatus, add_rules, await_repairer, watch
from nightlake.observe.events import EventBus
from nightlake.runs.journal.ingest import IngestJournal

# Messages as FTS and dCache write them into a rule's `error` (Rucio keeps 245 characters).
OOM = ("TRANSFER_FAILED:DESTINATION [70] HTTP 500 : Unexpected server error: "
       "io.netty.util.internal.OutOfDirectMemoryError: failed to allocate 16777216 byte(s) of direct memory")
COPY_500 = "TRANSFER_FAILED:TRANSFER [5] HTTP 500 : Copy failed with mode streamed, with error: Internal Server Error"
NO_POOLS = "TRANSFER_FAILED:DESTINATION OVERWRITE [28] HTTP 503 : No write pools online for [net:127.0.0.1]"
NO_SOURCES = "RequestErrMsg.NO_SOURCES:RequestState.NO_SOURCES"


class FakeClient:
    """Only the calls `nightlake.catalog.rules` makes; rules and their successive states are scripted."""

    account = "root"

    def __init__(self, rules=(), states=None, analysis=None, invalid=(), requests=None, history=None,
                 unlinked=()):
        self.rules = list(rules)  # what list_did_rules returns
        self.states = states or {}  # rule id -> list of answers (listed and get), last one repeats
        self.analysis = analysis or {}
        self.invalid = set(invalid)
        self.requests = requests or {}  # (source, destination) -> live requests
        self.history = history or {}  # (source, destination) -> archived requests
        self.added: list[tuple] = []
        self.calls: list[str] = []
        self.duplicate_once = False
        self.unlinked = set(unlinked)  # (source, destination) pairs without a distance

    def list_rses(self, expression=None):
        if expression in self.invalid:
            raise rucio_exc.InvalidRSEExpression("RSE Expression resulted in an empty set.")
        return [{"rse": r} for r in ((expression,) if expression else ("ONSITE", "OFFSITE-A", "OFFSITE-B"))]

    def list_did_rules(self, scope, name):
        return [r for r in self.rules if (r["scope"], r["name"]) == (scope, name)]

    def add_replication_rule(self, dids, copies, rse_expression, **options):
        (did,) = dids
        rule = {"id": f"rule-{len(self.rules)}", "scope": did["scope"], "name": did["name"], "copies": copies,
                "rse_expression": rse_expression, "account": self.account}
        self.rules.append(rule)
        self.added.append((did["name"], rse_expression, options))
        if self.duplicate_once:  # another process added the same rule a moment before us
            self.duplicate_once = False
            raise rucio_exc.DuplicateRule("A duplicate rule for this account, did, rse_expression, copies "
                                          "already exists")
        return [rule["id"]]

    def list_replication_rules(self, filters):
        self.calls.append("list_replication_rules")
        assert filters["account"] == self.account and filters["created_after"].endswith(" UTC")
        return iter([{"id": rule_id, **self._next(rule_id)} for rule_id in self.states])

    def get_replication_rule(self, rule_id):
        self.calls.append("get_replication_rule")
        if rule_id not in self.states:
            raise rucio_exc.RuleNotFound(f"No replication rule found.\nDetails: No rule with the id {rule_id} found")
        return self._next(rule_id)

    def _next(self, rule_id):
        answers = self.states[rule_id]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def list_requests(self, src_rse, dst_rse, request_states):
        self.calls.append("list_requests")
        return iter(self.requests.get((src_rse, dst_rse), []))

    def list_requests_history(self, src_rse, dst_rse, request_states, offset=0, limit=100):
        self.calls.append("list_requests_history")
        return iter(self.history.get((src_rse, dst_rse), [])[offset:offset + limit])

    def get_distance(self, source, destination):
        self.calls.append("get_distance")
        return [] if (source, destination) in self.unlinked else [{"distance": 1}]

    def examine_replication_rule(self, rule_id):
        return self.analysis[rule_id]


def catalog(client) -> Catalog:
    return Catalog(RetryPolicy(max_attempts=1, target="catalog", catalog=True, sleep=lambda s: None), client=client)


def rule_state(state, ok=0, replicating=0, stuck=0, error=None):
    return {"state": state, "locks_ok_cnt": ok, "locks_replicating_cnt": replicating, "locks_stuck_cnt": stuck,
            "error": error}


def tracked(*ids):
    return [{"rule_id": i, "scope": "cta", "dataset": f"ds-{i}", "rse_expression": "OFFSITE-A", "bytes": 3000}
            for i in ids]


SINCE = datetime(2026, 3, 14, tzinfo=UTC)


class Clock:
    """Time that moves only when the watch sleeps."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def recorder(bus):
    events = []
    bus.subscribe(events.append)
    return events


# --- policies --------------------------------------------------------------------------------------

def test_a_policy_takes_the_ingest_options_and_a_source_expression():
    assert parse_policy("OFFSITE-A,copies=2,lifetime=3600,activity=Debug,source=ONSITE") == \
        RulePolicy("OFFSITE-A", 2, 3600, "Debug", "ONSITE")
    assert parse_policy("OFFSITE=True") == RulePolicy("OFFSITE=True")


@pytest.mark.parametrize("text", ["OFFSITE-A,colour=red", "OFFSITE-A,copies=0", "OFFSITE-A,source=",
                                  "OFFSITE-A,source=ONSITE,source=OFFSITE-B"])
def test_a_bad_policy_is_bad_input(text):
    with pytest.raises(BadInput, match="--rule"):
        parse_policy(text)


# --- add -------------------------------------------------------------------------------------------

@pytest.fixture
def journal(tmp_path):
    with IngestJournal.create(tmp_path / "journal.sqlite", {}) as journal:
        journal.add_datasets([("cta", "ds1"), ("cta", "ds2")])
        yield journal


def test_add_puts_each_policy_on_each_dataset_and_journals_the_ids(journal):
    client, bus = FakeClient(), EventBus()
    events = recorder(bus)
    rules = add_rules(journal, catalog(client), [RulePolicy("OFFSITE-A", source_replica_expression="ONSITE")], bus)
    assert [(r["dataset"], r["rse_expression"], r["state"]) for r in rules] == \
        [("ds1", "OFFSITE-A", "created"), ("ds2", "OFFSITE-A", "created")]
    assert all(r["rule_id"] for r in rules)
    assert client.added[0][2]["source_replica_expression"] == "ONSITE"
    assert [(e.kind, e.fields["existed"]) for e in events] == [("rule.added", False)] * 2


def test_adding_twice_reuses_the_rules(journal):
    client = FakeClient()
    first = add_rules(journal, catalog(client), [RulePolicy("OFFSITE-A")], EventBus())
    events = recorder(bus := EventBus())
    again = add_rules(journal, catalog(client), [RulePolicy("OFFSITE-A")], bus)
    assert again == first and len(client.added) == 2
    assert all(e.fields["existed"] for e in events)


def test_a_rule_with_other_copies_is_not_the_same_rule():
    client = FakeClient(rules=[{"id": "old", "scope": "cta", "name": "ds1", "copies": 1,
                                "rse_expression": "OFFSITE-A", "account": "root"}])
    rule_id, existed = catalog(client).ensure_rule(("cta", "ds1"), RulePolicy("OFFSITE-A", copies=2))
    assert rule_id != "old" and not existed


def test_a_duplicate_rule_from_a_race_is_looked_up_not_an_error():
    client = FakeClient()
    client.duplicate_once = True
    rule_id, existed = catalog(client).ensure_rule(("cta", "ds1"), RulePolicy("OFFSITE-A"))
    assert existed and rule_id == client.rules[0]["id"]


def test_an_invalid_expression_is_bad_input_and_adds_nothing(journal):
    client = FakeClient(invalid={"OFFSITE-C"})
    with pytest.raises(BadInput, match="invalid RSE expression 'OFFSITE-C'"):
        add_rules(journal, catalog(client), [RulePolicy("OFFSITE-A"), RulePolicy("OFFSITE-C")], EventBus())
    assert client.added == [] and journal.rules() == []


# --- watch -----------------------------------------------------------------------------------------

def test_watch_follows_rules_until_all_are_ok():
    client = FakeClient(states={"r1": [rule_state("REPLICATING", 1, 2), rule_state("OK", 3)],
                                "r2": [rule_state("OK", 3)]})
    clock, bus = Clock(), EventBus()
    events = recorder(bus)
    result = watch(catalog(client), tracked("r1", "r2"), bus, 60, 5, SINCE, clock=clock, sleep=clock.sleep)
    assert result.exit_code == 0 and not result.timed_out and clock.now == 5
    progress = [e.fields for e in events if e.kind == "rules.progress"]
    assert len(progress) == 3  # r2 did not change at the second poll
    assert progress[0] == {"rule_id": "r1", "dataset": "cta:ds-r1", "rse_expression": "OFFSITE-A",
                           "state": "REPLICATING", "ok": 1, "replicating": 2, "stuck": 0}
    destination = [e.fields for e in events if e.kind == "replication.progress"]
    assert [(d["ok"], d["files"], d["bytes_ok"], d["bytes"]) for d in destination] == [(4, 6, 4000, 6000),
                                                                                      (6, 6, 6000, 6000)]


def test_a_poll_costs_one_listing_whatever_the_number_of_rules():
    ids = [f"r{i}" for i in range(500)]
    client = FakeClient(states={i: [rule_state("OK", 3)] for i in ids})
    watch(catalog(client), tracked(*ids), EventBus(), 60, 5, SINCE)
    assert client.calls.count("list_replication_rules") == 1
    assert "get_replication_rule" not in client.calls
    assert client.calls.count("list_requests") == 2  # ONSITE and OFFSITE-B into OFFSITE-A


def test_the_destination_view_counts_the_requests_of_the_runs_rules_only():
    requests = {("ONSITE", "OFFSITE-A"): [{"rule_id": "r1", "state": "SUBMITTED"}, {"rule_id": "r1", "state": "F"},
                                          {"rule_id": "someone-else", "state": "SUBMITTED"}]}
    client = FakeClient(states={"r1": [rule_state("REPLICATING", 1, 5)]}, requests=requests)
    bus, clock = EventBus(), Clock()
    events = recorder(bus)
    watch(catalog(client), tracked("r1"), bus, 0, 5, SINCE, clock=clock, sleep=clock.sleep)
    (seen,) = [e.fields for e in events if e.kind == "replication.progress"]
    assert (seen["active"], seen["failed"], seen["queued"]) == (1, 1, 3)


def test_watch_gives_up_at_the_timeout_and_names_the_rules_still_replicating():
    client = FakeClient(states={"r1": [rule_state("REPLICATING", 0, 3)], "r2": [rule_state("OK", 3)]})
    clock = Clock()
    result = watch(catalog(client), tracked("r1", "r2"), EventBus(), 12, 5, SINCE, clock=clock, sleep=clock.sleep)
    assert result.timed_out and result.exit_code == 1 and clock.now == 12
    assert [s.rule_id for s in result.unsettled] == ["r1"]


def test_retry_waits_for_the_repairer_to_take_each_boosted_rule_up():
    client = FakeClient(states={"r1": [rule_state("STUCK", 0, 0, 3), rule_state("REPLICATING", 0, 3)],
                                "r2": [rule_state("STUCK", 0, 0, 3)] * 3 + [rule_state("OK", 3)]})
    clock = Clock()
    assert await_repairer(catalog(client), ["r1", "r2"], 60, 2, clock=clock, sleep=clock.sleep) == []
    assert clock.now == 6  # r1 left STUCK at the second poll, r2 at the fourth


def test_retry_names_the_rules_the_repairer_did_not_take_up_in_time():
    client = FakeClient(states={"r1": [rule_state("STUCK", 0, 0, 3)], "r2": [rule_state("REPLICATING", 0, 3)]})
    clock = Clock()
    assert await_repairer(catalog(client), ["r1", "r2"], 10, 2, clock=clock, sleep=clock.sleep) == ["r1"]
    assert clock.now == 10


def test_a_rule_rucio_no_longer_has_is_gone_and_not_ok():
    client = FakeClient(states={"r1": [rule_state("OK", 3)]})
    result = watch(catalog(client), tracked("r1", "deleted"), EventBus(), 60, 5, SINCE)
    assert not result.timed_out and result.exit_code == 1
    assert [(s.rule_id, s.state) for s in result.gone] == [("deleted", "GONE")]


def test_a_chained_rule_stuck_for_want_of_its_source_waits_while_the_first_copy_is_made():
    first = [rule_state("REPLICATING", 0, 3), rule_state("OK", 3), rule_state("OK", 3)]
    second = {**rule_state("STUCK", 0, 0, 3, "MissingSourceReplica"), "source_replica_expression": "OFFSITE"}
    chained = [second, second, {**rule_state("OK", 3), "source_replica_expression": "OFFSITE"}]
    client = FakeClient(states={"first": first, "second": chained})
    rules = [{**tracked("first")[0], "dataset": "ds"}, {**tracked("second")[0], "dataset": "ds"}]
    clock = Clock()
    result = watch(catalog(client), rules, EventBus(), 60, 5, SINCE, clock=clock, sleep=clock.sleep)
    assert result.exit_code == 0 and clock.now == 10


def test_a_chained_rule_whose_source_rule_is_stuck_too_is_stuck_for_good():
    second = {**rule_state("STUCK", 0, 0, 3, "MissingSourceReplica"), "source_replica_expression": "OFFSITE"}
    client = FakeClient(states={"first": [rule_state("STUCK", 0, 0, 3, OOM)], "second": [second]},
                        analysis={"first": stuck_locks(), "second": stuck_locks()})
    rules = [{**tracked("first")[0], "dataset": "ds"}, {**tracked("second")[0], "dataset": "ds"}]
    result = watch(catalog(client), rules, EventBus(), 60, 5, SINCE)
    assert not result.timed_out and [s.rule_id for s in result.stuck] == ["first", "second"]


def stuck_locks(*names, rse="OFFSITE-A", last_error="RequestState.FAILED", sources=(("ONSITE", True),)):
    return {"transfers": [{"scope": "cta", "name": n, "rse": rse, "attempts": 1, "last_error": last_error,
                           "sources": list(sources)} for n in names]}


def test_a_stuck_rule_ends_the_watch_with_its_errors_grouped():
    client = FakeClient(states={"r1": [rule_state("STUCK", 1, 0, 2, NO_SOURCES)]},
                        analysis={"r1": stuck_locks("f1", "f2", last_error="RequestState.NO_SOURCES", sources=())})
    bus = EventBus()
    events = recorder(bus)
    result = watch(catalog(client), tracked("r1"), bus, 60, 5, SINCE)
    assert result.exit_code == 1 and [s.rule_id for s in result.stuck] == ["r1"]
    assert [(g.group, g.count, g.rses) for g in result.errors] == [("no-sources", 2, ("OFFSITE-A",))]
    assert "list_requests_history" not in client.calls  # no source ever: no request to look for
    assert [e.fields for e in events if e.kind == "replication.error"] == \
        [{"group": "no-sources", "count": 2, "rses": ["OFFSITE-A"],
          "sample": f"{NO_SOURCES}; no source replica available", "retrying": False}]


def test_a_rule_still_failing_at_the_timeout_reports_each_files_latest_failed_attempt():
    """Many files to a refusing RSE: the repairer re-queues stuck locks while others copy, so the
    rule never settles; the watch still says why it fails, from the request history."""
    history = {("ONSITE", "OFFSITE-A"): [
        {"rule_id": "r1", "name": "f1", "err_msg": COPY_500, "updated_at": "2026-03-14 01:00:00"},
        {"rule_id": "r1", "name": "f1", "err_msg": NO_POOLS, "updated_at": "2026-03-14 02:00:00"},
        {"rule_id": "r1", "name": "f2", "err_msg": NO_POOLS, "updated_at": "2026-03-14 02:00:01"},
        {"rule_id": "other", "name": "f3", "err_msg": OOM, "updated_at": "2026-03-14 03:00:00"}]}
    client = FakeClient(states={"r1": [rule_state("REPLICATING", 1, 2, 0, NO_POOLS)]}, history=history)
    clock = Clock()
    result = watch(catalog(client), tracked("r1"), EventBus(), 10, 5, SINCE, clock=clock, sleep=clock.sleep)
    assert result.timed_out and not result.stuck
    assert [(g.group, g.count, g.rses, g.retrying) for g in result.errors] == \
        [(replication_error_group(NO_POOLS), 2, ("OFFSITE-A",), True)]


# --- harvest and grouping ----------------------------------------------------------------------------

def locks(*messages, rse="OFFSITE-A"):
    return [StuckLock("r", f"f{i}", rse, m) for i, m in enumerate(messages)]


def test_errors_group_by_cause_with_counts_rses_and_a_sample_each():
    groups = group_errors([*locks(OOM, OOM, OOM, NO_POOLS, COPY_500, COPY_500),
                           *locks(OOM.replace("16777216", "4194304"), OOM, rse="OFFSITE-B")])
    assert [(g.group, g.count, g.rses) for g in groups] == \
        [("storage-out-of-memory", 5, ("OFFSITE-A", "OFFSITE-B")), ("http-500-copy", 2, ("OFFSITE-A",)),
         ("no-write-pools", 1, ("OFFSITE-A",))]
    assert groups[0].sample == OOM


def status(rule_id, state, ok, replicating, stuck, error=None):
    return RuleStatus(rule_id, f"cta:ds-{rule_id}", "OFFSITE-A", state, ok, replicating, stuck, error)


def test_harvest_takes_each_files_latest_message_from_the_request_history():
    history = {("ONSITE", "OFFSITE-A"): [
        {"rule_id": "r1", "name": "f1", "err_msg": COPY_500, "updated_at": "2026-03-14 01:00:00"},
        {"rule_id": "r1", "name": "f1", "err_msg": OOM, "updated_at": "2026-03-14 02:00:00"},
        {"rule_id": "other", "name": "f2", "err_msg": NO_POOLS, "updated_at": "2026-03-14 03:00:00"}]}
    client = FakeClient(analysis={"r1": stuck_locks("f1", "f2")}, history=history)
    found = harvest(catalog(client), [status("r1", "STUCK", 0, 0, 2, "the rule's last error")])
    assert [(lock.name, lock.message) for lock in found] == [("f1", OOM), ("f2", "the rule's last error")]


def test_a_no_sources_lock_whose_holders_have_no_distance_to_it_says_so():
    client = FakeClient(analysis={"r1": stuck_locks("f1", "f2", last_error="RequestState.NO_SOURCES"),
                                  "r2": stuck_locks("f3", rse="OFFSITE-B", last_error="RequestState.NO_SOURCES")},
                        unlinked={("ONSITE", "OFFSITE-A")})
    found = harvest(catalog(client), [status("r1", "STUCK", 0, 0, 2, NO_SOURCES),
                                      status("r2", "STUCK", 0, 0, 1, NO_SOURCES)])
    assert [lock.message for lock in found] == \
        [f"{NO_SOURCES}; no distance from ONSITE to OFFSITE-A: the conveyor has no path "
         "(rucio rse distance set ONSITE OFFSITE-A --distance 1)"] * 2 \
        + [NO_SOURCES]
    assert client.calls.count("get_distance") == 2  # once per (source, destination) pair, not per file


def test_the_history_is_read_page_by_page():
    rows = [{"rule_id": "r1", "name": f"f{i}", "err_msg": OOM, "updated_at": "x"} for i in range(2500)]
    client = FakeClient(analysis={"r1": stuck_locks("f2499")}, history={("ONSITE", "OFFSITE-A"): rows})
    (lock,) = harvest(catalog(client), [status("r1", "STUCK", 0, 0, 1)])
    assert lock.message == OOM
    assert client.calls.count("list_requests_history") == 3  # 3 pages from ONSITE, the file's only source


def test_harvest_counts_each_stuck_lock_once_and_the_unlisted_ones_with_the_rules_error():
    client = FakeClient(analysis={"stuck": stuck_locks("f1", "f2"), "moving": stuck_locks("f3")})
    found = harvest(catalog(client), [status("stuck", "STUCK", 0, 0, 3, OOM),
                                      status("moving", "REPLICATING", 1, 1, 1, COPY_500),
                                      status("ok", "OK", 3, 0, 0)])
    assert [lock.message for lock in found] == [OOM, OOM, OOM, COPY_500]


@pytest.mark.parametrize("rule_error, transfer, expected", [
    (OOM, {"attempts": 2, "last_error": "RequestState.FAILED", "sources": [("ONSITE", True)]}, OOM),
    (None, {"attempts": 1, "last_error": "RequestState.NO_SOURCES", "sources": []},
     "RequestState.NO_SOURCES; no source replica available"),
    ("MissingSourceReplica", {"attempts": 0, "last_error": "None", "sources": []}, "MissingSourceReplica"),
    (None, {"attempts": 0, "last_error": "None", "sources": []}, NO_ERROR_RECORDED),
])
def test_a_lock_message_prefers_the_rule_error_and_notes_a_missing_source(rule_error, transfer, expected):
    assert lock_message(rule_error, transfer) == expected


# Messages as the lake's faults made them (readonly and full, error, a source file deleted), gfal2's
# through the transfer service and Rucio's poller; and Rucio's own for a source expression without data.
@pytest.mark.parametrize("message, group", [
    ("RequestErrMsg.TRANSFER_FAILED:DESTINATION MAKE_PARENT HTTP 500 : Unexpected server error: 500  with url "
     "https://127.0.0.1:30121/rucio/cta/0b/e7", "destination-refused"),
    ("RequestErrMsg.TRANSFER_FAILED:DESTINATION OVERWRITE   HTTP 403 : Permission refused", "permission"),
    ("RequestErrMsg.TRANSFER_FAILED:SOURCE [2] HTTP 404 : File not found", "source-missing"),
    ("MissingSourceReplica", "no-sources"),
])
def test_the_lakes_own_failures_fall_in_their_groups(message, group):
    from nightlake.catalog.failures import replication_error_group

    assert replication_error_group(message) == group


# --- the watch's display -----------------------------------------------------------------------------

def destination(ok, bytes_ok, files=100, stuck=0):
    from nightlake.flows.rules import Destination

    return Destination("OFFSITE-A", 2, files, ok, files - ok - stuck, stuck, 100_000_000, bytes_ok, queued=3,
                       active=2)


def test_rates_and_eta_count_from_the_first_poll_of_this_watch():
    from nightlake.cli.progress import ReplicationRates

    clock = Clock()
    rates = ReplicationRates(clock)
    rates.update([destination(40, 40_000_000)])  # replicated before this watch: not a rate
    clock.sleep(10)
    latest = destination(60, 60_000_000, stuck=10)
    rates.update([latest])
    assert rates.of(latest) == (2.0, 2.0, 15.0)  # 30 files left (100 - 60 - 10 stuck) at 2 files/s


def test_the_terminal_table_shows_each_destination():
    from rich.console import Console

    from nightlake.cli.progress import ReplicationRates
    from nightlake.cli.rules import progress_table
    from nightlake.flows.rules import Poll

    console = Console(width=200, record=True)
    console.print(progress_table(Poll([], [destination(60, 60_000_000)]), ReplicationRates(Clock())))
    row = next(line for line in console.export_text().splitlines() if "OFFSITE-A" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == \
        ["OFFSITE-A", "2", "60/100", "60 MB/100 MB", "0.0", "0.0", "3", "2", "0", "0", "-"]


def test_without_a_terminal_a_line_per_destination_every_30_s_and_one_when_a_rule_settles(monkeypatch):
    from rich.console import Console

    import nightlake.cli.rules as cli
    from nightlake.cli.progress import ReplicationRates
    from nightlake.flows.rules import Poll

    console = Console(width=300, record=True)
    monkeypatch.setattr(cli, "console", console)
    clock = Clock()
    show = cli.PlainProgress(ReplicationRates(clock))
    for now, ok, state in ((0, 40, "REPLICATING"), (10, 50, "REPLICATING"), (31, 70, "OK")):
        clock.now = now
        show(Poll([status("r1", state, ok, 100 - ok, 0)], [destination(ok, ok * 1_000_000)]))
    lines = console.export_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines if "OFFSITE-A:" in line and "files," in line] == [
        "OFFSITE-A: 40/100 files, 40 MB/100 MB; 0.0 files/s, 0.0 MB/s; requests queued 3, active 2, failed 0; "
        "stuck 0; ETA -",
        "OFFSITE-A: 70/100 files, 70 MB/100 MB; 1.0 files/s, 1.0 MB/s; requests queued 3, active 2, failed 0; "
        "stuck 0; ETA 31 s"]  # 30 files left at 30/31 files/s
    assert "rule r1 cta:ds-r1 → OFFSITE-A: OK" in lines
