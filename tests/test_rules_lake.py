"""`nightlake rules add | watch` against the real lake: OK where the data is, REPLICATING while the
lake's conveyor-submitter is stopped, and STUCK with Rucio's own error, grouped.

STUCK is produced two ways, both real Rucio behaviour (see docs/rules.md):
- the conveyor: the dataset's only replicas (ONSITE) are marked UNAVAILABLE after the rule to
  OFFSITE-B is added; one `rucio-conveyor-submitter --run-once` finds no source and marks the
  requests NO_SOURCES, one `rucio-conveyor-finisher --run-once` sets the locks and the rule STUCK
  with the error "RequestErrMsg.NO_SOURCES:RequestState.NO_SOURCES";
- a rule whose `source=` (source_replica_expression) holds no replica is STUCK at creation with
  "MissingSourceReplica".
A rule towards an RSE put in a fault (`lake fault OFFSITE-A readonly`) goes STUCK through the
conveyor with gfal2's message for each file, harvested from Rucio's request history and grouped;
once the fault is cleared, `rules retry` boosts it and the judge-repairer brings it to OK.
Each test ingests its own dataset, so the rules it watches are its own. The lake's own
conveyor-submitter is stopped (by PID) while a test needs requests to stay QUEUED, and started again
by `lake up` after it (test_transfers_lake.py covers replication itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from ingest_helpers import nightlake
from lake_daemons import stopped
from nightlake.catalog.failures import replication_error_group
from nightlake.lake.rucio_server import server_env

pytestmark = pytest.mark.lake


@pytest.fixture
def run(lake, scratch) -> Path:
    """A run directory holding one fresh dataset of three small files, ingested to ONSITE without rules."""
    tag = uuid.uuid4().hex[:10]
    dataset = scratch / "source" / f"rules_{tag}"
    dataset.mkdir(parents=True)
    for i in range(3):
        (dataset / f"rules_{tag}_{i}.dat").write_bytes(os.urandom(2000 + i))
    run = scratch / "run"
    result = nightlake("ingest", str(scratch / "source"), "--scope", "cta", "--rse", "ONSITE",
                       "--run", str(run), "--quiet")
    assert result.returncode == 0, result.stderr
    return run


def rules_cmd(*args: str) -> subprocess.CompletedProcess:
    return nightlake("rules", *map(str, args))


def events(run: Path, kind: str) -> list[dict]:
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def dataset_files(run: Path) -> list[str]:
    return [p.name for p in (Path(json.loads((run / "run.json").read_text())["source"])).rglob("*.dat")]


def run_daemon_once(lake, name: str, *args: str) -> None:
    """A Rucio daemon, once, with the lake's server config (as `lake up` runs its daemons)."""
    argv = [str(lake.server_venv / "bin" / f"rucio-{name}"), "--run-once", *args]
    result = subprocess.run(argv, env=server_env(lake), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_rule_where_the_data_is_becomes_ok_and_watch_exits_0(run):
    added = rules_cmd("add", run, "--rule", "ONSITE")
    assert added.returncode == 0, added.stderr
    watched = rules_cmd("watch", run, "--timeout", 60, "--interval", 1)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "1 of 1 rules OK" in watched.stdout
    progress = events(run, "rules.progress")[-1]
    assert (progress["state"], progress["ok"], progress["replicating"], progress["stuck"]) == ("OK", 3, 0, 0)


def test_adding_the_same_rule_again_reuses_it(run):
    first = rules_cmd("add", run, "--rule", "ONSITE")
    again = rules_cmd("add", run, "--rule", "ONSITE")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("existing rule")
    assert again.stdout.split()[2] == first.stdout.split()[2]
    assert [e["existed"] for e in events(run, "rule.added")] == [False, True]


def test_a_rule_without_a_running_conveyor_times_out_and_watch_names_it(lake, run):
    with stopped(lake, "conveyor-submitter"):
        rule_id = rules_cmd("add", run, "--rule", "OFFSITE-A").stdout.split()[2].rstrip(":")
        watched = rules_cmd("watch", run, "--timeout", 2, "--interval", 0.5)
    assert watched.returncode == 1
    assert "(timeout)" in watched.stdout
    assert f"still REPLICATING {rule_id}" in watched.stdout
    assert events(run, "rules.progress")[-1]["replicating"] == 3


def test_an_unknown_expression_or_run_is_bad_input(run, scratch):
    bad = rules_cmd("add", run, "--rule", "OFFSITE-Z")
    assert bad.returncode == 2 and "invalid RSE expression 'OFFSITE-Z'" in bad.stderr
    assert rules_cmd("watch", scratch / "nothing").returncode == 2


def test_a_rule_with_no_source_left_goes_stuck_through_the_conveyor(lake, run):
    from rucio.client import Client

    with stopped(lake, "conveyor-submitter"):
        added = rules_cmd("add", run, "--rule", "OFFSITE-B,activity=Debug")
        assert added.returncode == 0, added.stderr
        Client().update_replicas_states("ONSITE", [{"scope": "cta", "name": name, "state": "U"}
                                                   for name in dataset_files(run)])
        run_daemon_once(lake, "conveyor-submitter", "--include-rses", "OFFSITE-B", "--bulk", "100000")
        run_daemon_once(lake, "conveyor-finisher")

    watched = rules_cmd("watch", run, "--timeout", 30, "--interval", 1)
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "1 STUCK" in watched.stdout
    assert "error [no-sources] × 3 at OFFSITE-B: RequestErrMsg.NO_SOURCES:RequestState.NO_SOURCES" in watched.stdout
    (error,) = events(run, "replication.error")
    assert (error["group"], error["count"]) == ("no-sources", 3)


@pytest.fixture
def unlinked_rse(lake):
    """An RSE on OFFSITE-A's storage that no distance links to any other RSE, deleted after the test
    (its rules first) so that the other tests see the lake's three RSEs."""
    from rucio.client import Client

    from nightlake.lake.layout import RSES
    from nightlake.lake.objects import protocols

    client, name = Client(), f"NODIST-{uuid.uuid4().hex[:6].upper()}"
    client.add_rse(name)
    for protocol in protocols(lake, RSES[1]):
        client.add_protocol(name, protocol)
    client.add_rse_attribute(name, "fts", lake.transfers_url)
    client.set_local_account_limit("root", name, -1)
    yield name
    for rule in client.list_replication_rules({"rse_expression": name}):
        client.delete_replication_rule(rule["id"], purge_replicas=True)
    client.delete_rse(name)


def test_a_rule_towards_an_rse_without_distance_is_stuck_with_no_source_and_says_why(run, unlinked_rse):
    rule_id = rules_cmd("add", run, "--rule", unlinked_rse).stdout.split()[2].rstrip(":")
    watched = rules_cmd("watch", run, "--timeout", 180, "--interval", 1)
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert f"STUCK {rule_id}" in watched.stdout
    assert f"error [no-sources] × 3 at {unlinked_rse}: RequestErrMsg.NO_SOURCES:RequestState.NO_SOURCES" \
           in watched.stdout
    assert f"no distance from ONSITE to {unlinked_rse}: the conveyor has no path" in watched.stdout
    (error,) = events(run, "replication.error")
    assert (error["group"], error["count"], error["rses"]) == ("no-sources", 3, [unlinked_rse])


def test_a_rule_whose_source_expression_holds_no_replica_is_stuck_at_once(run):
    added = rules_cmd("add", run, "--rule", "OFFSITE-A,source=OFFSITE-B")
    assert added.returncode == 0, added.stderr
    watched = rules_cmd("watch", run, "--timeout", 30, "--interval", 1)
    assert watched.returncode == 1
    assert "STUCK" in watched.stdout and "MissingSourceReplica" in watched.stdout
    (error,) = events(run, "replication.error")
    assert error == {**error, "group": replication_error_group("MissingSourceReplica"), "count": 3,
                     "sample": "MissingSourceReplica"}


def each_files_own_message(rule_id: str, names: list[str]) -> bool:
    """The harvest found each stuck file's own message in Rucio's requests, not the rule's one
    error: gfal2 names the directory it could not make, which Rucio's lfn2pfn derives from the file."""
    from nightlake.catalog.client import Catalog
    from nightlake.flows.rule_errors import harvest
    from nightlake.flows.rules import RuleStatus

    stuck = RuleStatus(rule_id, "cta:?", "OFFSITE-A", "STUCK", 0, 0, len(names), "the rule's error")
    messages = {lock.name: lock.message for lock in harvest(Catalog(), [stuck])}
    digests = {name: hashlib.md5(f"cta:{name}".encode()).hexdigest() for name in names}
    assert sorted(messages) == sorted(names)
    return all(messages[n].endswith(f"/rucio/cta/{d[:2]}/{d[2:4]}") for n, d in digests.items())


def repaired(rule_id: str) -> bool:
    """the judge-repairer taking the boosted rule up again (it leaves STUCK)"""
    from rucio.client import Client

    return Client().get_replication_rule(rule_id)["state"] != "STUCK"


@pytest.fixture
def faulted(lake):
    """OFFSITE-A read-only for the test, cleared after it whatever happened."""
    def clear():
        result = nightlake("lake", "fault", "--dir", str(lake.root), "OFFSITE-A", "--clear")
        assert result.returncode == 0, result.stderr

    result = nightlake("lake", "fault", "--dir", str(lake.root), "OFFSITE-A", "readonly")
    assert result.returncode == 0, result.stderr
    yield clear
    clear()


def test_a_rule_to_a_faulted_rse_is_stuck_with_each_files_error_then_ok_once_it_is_cleared(run, faulted):
    rule_id = rules_cmd("add", run, "--rule", "OFFSITE-A").stdout.split()[2].rstrip(":")
    stuck = rules_cmd("watch", run, "--timeout", 180, "--interval", 1)
    assert stuck.returncode == 1, stuck.stdout + stuck.stderr
    assert f"STUCK {rule_id}" in stuck.stdout
    assert "error [destination-refused] × 3 at OFFSITE-A: RequestErrMsg.TRANSFER_FAILED:DESTINATION " \
           "MAKE_PARENT HTTP 500" in stuck.stdout
    (error,) = events(run, "replication.error")
    assert (error["group"], error["count"], error["rses"]) == ("destination-refused", 3, ["OFFSITE-A"])
    assert each_files_own_message(rule_id, dataset_files(run))

    faulted()
    retried = rules_cmd("retry", run)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert retried.stdout.splitlines() == [f"retrying STUCK rule {rule_id}",
                                           "the judge-repairer has taken up the retried rules"]
    assert repaired(rule_id)
    ok = rules_cmd("watch", run, "--timeout", 180, "--interval", 1)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 of 1 rules OK" in ok.stdout
    final = events(run, "replication.progress")[-1]
    assert (final["rse_expression"], final["ok"], final["files"], final["stuck"]) == ("OFFSITE-A", 3, 3, 0)
    assert final["bytes_ok"] == final["bytes"] == sum(2000 + i for i in range(3))


def test_ctaos_chained_pair_added_together_is_watched_through_its_first_stuck(run):
    """One copy to OFFSITE-A and two off-site read off-site, added at once: the second is STUCK
    (no off-site source yet) until the judge-repairer retries it; the watch waits for it."""
    added = rules_cmd("add", run, "--rule", "OFFSITE-A", "--rule", "OFFSITE,copies=2,source=OFFSITE")
    assert added.returncode == 0, added.stderr
    watched = rules_cmd("watch", run, "--timeout", 180, "--interval", 1)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "2 of 2 rules OK" in watched.stdout
    states = [e["state"] for e in events(run, "rules.progress") if e["rse_expression"] == "OFFSITE"]
    assert states[0] == "STUCK" and states[-1] == "OK"
