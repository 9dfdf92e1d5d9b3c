"""Retrieve without a lake: the download journal, selection parsing, replica choice, and the
download loop over file:// replicas (verification, retry, resume)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import requests

from conftest import nightlake
from nightlake import BadInput
from nightlake.catalog.failures import ErrorClass
from nightlake.catalog.retry import GaveUp, RetryPolicy
from nightlake.cli.common import stopped_message
from nightlake.flows.failing import STREAKS
from nightlake.flows.retrieve.download import Retrieve, Storages, destination
from nightlake.flows.retrieve.replicas import UNREADABLE, ReadPriorities, ReplicaChooser, choose_replica
from nightlake.flows.retrieve.run import RetrieveRequest, parse_filter
from nightlake.observe.events import EventBus
from nightlake.runs.journal.download import D, DownloadJournal
from nightlake.runs.journal.states import IllegalTransition


def _adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@pytest.fixture
def journal(tmp_path):
    with DownloadJournal.create(tmp_path / "retrieve.sqlite") as j:
        yield j


def _row(name: str, pfn: str | None = "file:///nowhere", size: int = 3, adler32: str | None = "00000001") -> dict:
    return {"scope": "cta", "name": name, "bytes": size, "adler32": adler32, "rse": "ONSITE", "pfn": pfn}


def _replicas(tmp_path: Path, journal: DownloadJournal, count: int = 5) -> dict[str, bytes]:
    """Files on a file:// 'RSE', journaled as Rucio would list them."""
    source = tmp_path / "rse"
    source.mkdir()
    contents = {f"f{i}.fits": os.urandom(1000 + i) for i in range(count)}
    for name, data in contents.items():
        (source / name).write_bytes(data)
    journal.add_files(_row(n, f"file://{source / n}", len(d), _adler32(d)) for n, d in contents.items())
    return contents


class CountingStorages(Storages):
    """Counts storage.get calls per PFN, to prove what was (not) downloaded."""

    def __init__(self):
        super().__init__(pool_size=2)
        self.gets: dict[str, int] = {}

    def for_pfn(self, pfn):
        storage = super().for_pfn(pfn)
        outer = self

        class Counting:
            def get(self, pfn, dest, **kwargs):
                outer.gets[pfn] = outer.gets.get(pfn, 0) + 1
                return storage.get(pfn, dest, **kwargs)
        return Counting()


def _retrieve(journal, out, storages=None, **kwargs) -> Retrieve:
    request = RetrieveRequest(out=out, run=out.parent / "run", dids=("cta:x",), workers=2,
                              policy=RetryPolicy(sleep=lambda s: None), **kwargs)
    return Retrieve(journal, storages or CountingStorages(), request, EventBus())


# --- journal ----------------------------------------------------------------------------------------

def test_journal_walks_planned_downloading_done_and_counts_attempts(journal):
    journal.add_files([_row("a"), _row("b")])
    ids = [r.id for r in next(journal.batches(D.PLANNED))]
    journal.mark(ids, D.DOWNLOADING)
    journal.mark(ids, D.DONE)
    done = next(journal.batches(D.DONE))
    assert [r.attempts for r in done] == [1, 1]
    assert journal.counts()[D.DONE] == 2


def test_journal_add_files_is_idempotent_per_did(journal):
    assert journal.add_files([_row("a"), _row("b")]) == 2
    assert journal.add_files([_row("b"), _row("c")]) == 1


def test_journal_illegal_transition_changes_nothing(journal):
    journal.add_files([_row("a"), _row("b")])
    a, b = next(journal.batches(D.PLANNED))
    journal.mark([a.id], D.DOWNLOADING)
    with pytest.raises(IllegalTransition):
        journal.mark([a.id, b.id], D.DONE)
    assert journal.counts()[D.DOWNLOADING] == 1 and journal.counts()[D.PLANNED] == 1


def test_journal_failure_keeps_class_and_message_until_requeued(journal):
    journal.add_files([_row("a")])
    (a,) = next(journal.batches(D.PLANNED))
    journal.fail([a.id], "permanent", "adler32 mismatch")
    (failed,) = next(journal.batches(D.FAILED))
    assert (failed.error_class, failed.error_message) == ("permanent", "adler32 mismatch")
    assert journal.requeue_failed() == 1
    assert next(journal.batches(D.PLANNED))[0].error_class is None


def test_journal_batches_survive_marking_while_walking(journal):
    journal.add_files(_row(f"f{i}") for i in range(25))
    seen = []
    for batch in journal.batches(D.PLANNED, size=10):
        seen += [r.id for r in batch]
        journal.mark([r.id for r in batch], D.DOWNLOADING)
    assert len(seen) == len(set(seen)) == 25


# --- selection ----------------------------------------------------------------------------------------

def test_filter_is_key_equals_value():
    assert parse_filter("telescope=LST-1") == ("telescope", "LST-1")
    assert parse_filter("obs_id.gte=2") == ("obs_id.gte", "2")


@pytest.mark.parametrize("text", ["telescope", "=LST-1", "telescope=", "tele scope=x"])
def test_malformed_filter_is_bad_input(text):
    with pytest.raises(BadInput):
        parse_filter(text)


def test_malformed_filter_exits_2_before_anything_is_written(tmp_path):
    result = nightlake("retrieve", "--filter", "telescope", "--scope", "cta", "--out", str(tmp_path / "o"),
                       "--run", str(tmp_path / "r"), check=False)
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr
    assert not (tmp_path / "r").exists()


def test_dids_and_filters_together_exit_2(tmp_path):
    result = nightlake("retrieve", "cta:ds", "--filter", "a=b", "--scope", "cta", "--out", str(tmp_path / "o"),
                       "--run", str(tmp_path / "r"), check=False)
    assert result.returncode == 2


def _replica(*pfns: tuple[str, str]) -> dict:
    """What `list_replicas(sort="random")` answers: Rucio's `priority` is a random rank, so absent here."""
    return {"pfns": {pfn: {"rse": rse, "priority": 1} for rse, pfn in pfns}}


def _priorities(**by_rse: dict[str, int]):
    """The RSEs' own read priorities, as `ReadPriorities` reads them from `rse_info`."""
    return lambda rse, scheme: by_rse.get(rse.replace("-", "_"), {}).get(scheme, 99)


def test_replica_on_from_rse_is_preferred():
    replica = _replica(("ONSITE", "https://a/x"), ("OFFSITE-A", "root://b/x"), ("OFFSITE-A", "https://b/x"))
    priority = _priorities(ONSITE={"https": 1}, OFFSITE_A={"root": 2, "https": 1})
    assert choose_replica(replica, "OFFSITE-A", priority) == ("OFFSITE-A", "https://b/x")


def test_within_an_rse_its_own_protocol_priority_decides_not_rucios_rank():
    replica = _replica(("ONSITE", "https://a/x"), ("ONSITE", "root://a/x"))
    assert choose_replica(replica, None, _priorities(ONSITE={"root": 1, "https": 2})) == ("ONSITE", "root://a/x")
    assert choose_replica(replica, None, _priorities(ONSITE={"root": 2, "https": 1})) == ("ONSITE", "https://a/x")


def test_read_priorities_come_from_the_rse_protocols_once_per_rse():
    calls = []

    class Catalog:
        def rse_info(self, rse):
            calls.append(rse)
            return {"protocols": [{"scheme": "https", "domains": {"wan": {"read": 2}}},
                                  {"scheme": "root", "domains": {"wan": {"read": 1}}},
                                  {"scheme": "davs", "domains": {"wan": {"read": 0}}}]}

    priorities = ReadPriorities(Catalog())
    assert [priorities("ONSITE", s) for s in ("root", "https", "davs", "file")] == [1, 2, UNREADABLE, UNREADABLE]
    assert calls == ["ONSITE"]


def test_any_replica_when_from_rse_has_none():
    assert choose_replica(_replica(("ONSITE", "root://a/x")), "OFFSITE-B", _priorities()) == ("ONSITE", "root://a/x")


def test_unsupported_schemes_count_as_no_replica():
    assert choose_replica(_replica(("TAPE", "srm://t/x")), None, _priorities()) == (None, None)
    assert choose_replica({"pfns": {}}, None, _priorities()) == (None, None)


def test_a_name_cannot_climb_out_of_the_download_directory(journal, tmp_path):
    journal.add_files([_row("../../etc/passwd")])
    (record,) = next(journal.batches(D.PLANNED))
    with pytest.raises(ValueError):
        destination(tmp_path, record)


# --- download loop --------------------------------------------------------------------------------

def test_files_land_in_out_scope_name_with_their_bytes(journal, tmp_path):
    contents = _replicas(tmp_path, journal)
    out = tmp_path / "out"
    _retrieve(journal, out).run()
    assert {p.name: p.read_bytes() for p in (out / "cta").iterdir()} == contents
    assert journal.counts()[D.DONE] == len(contents)


def test_catalog_adler32_mismatch_is_retried_once_then_fails_alone(journal, tmp_path):
    contents = _replicas(tmp_path, journal, count=3)
    with journal._tx() as db:  # the catalog says otherwise than the storage for one file
        db.execute("UPDATE files SET adler32 = 'deadbeef' WHERE name = 'f1.fits'")
    out, storages = tmp_path / "out", CountingStorages()
    _retrieve(journal, out, storages).run()
    (failed,) = next(journal.batches(D.FAILED))
    assert failed.name == "f1.fits" and failed.error_class == "permanent" and "adler32" in failed.error_message
    assert storages.gets[failed.pfn] == 2
    assert sorted(p.name for p in (out / "cta").iterdir()) == ["f0.fits", "f2.fits"]
    assert journal.counts()[D.DONE] == len(contents) - 1


def test_a_file_without_replica_fails_and_the_others_go_on(journal, tmp_path):
    _replicas(tmp_path, journal, count=2)
    journal.add_files([_row("orphan.fits", pfn=None)])
    _retrieve(journal, tmp_path / "out").run()
    (failed,) = next(journal.batches(D.FAILED))
    assert failed.name == "orphan.fits" and "no available replica" in failed.error_message
    assert journal.counts()[D.DONE] == 2


class DeadStorages(Storages):
    """Storage whose RSE refuses every connection, as a stopped server does."""

    def __init__(self):
        super().__init__(pool_size=2)

    def for_pfn(self, pfn):
        class Dead:
            def get(self, pfn, dest, **kwargs):
                raise requests.ConnectionError("[Errno 111] Connection refused")
        return Dead()


def test_a_dead_rse_stops_the_retrieve_instead_of_failing_every_file(journal, tmp_path):
    journal.add_files(_row(f"f{i}.fits", pfn=f"root://127.0.0.1:1//rucio/f{i}") for i in range(200))
    with pytest.raises(GaveUp) as stopped:
        _retrieve(journal, tmp_path / "out", DeadStorages()).run()
    assert (stopped.value.target, stopped.value.classified.error_class) == ("ONSITE", ErrorClass.TRANSIENT_STORAGE)
    counts = journal.counts()
    assert counts[D.FAILED] == STREAKS[ErrorClass.TRANSIENT_STORAGE]
    assert counts[D.DOWNLOADING] + counts[D.PLANNED] == 200 - counts[D.FAILED]  # left for the re-run
    assert stopped_message(stopped.value).startswith("ONSITE: transient_storage after 5 attempt(s)")


def test_permanent_failures_fail_only_their_files_and_never_stop_the_retrieve(journal, tmp_path):
    contents = _replicas(tmp_path, journal, count=3)
    journal.add_files(_row(f"gone{i}.fits", pfn=f"file://{tmp_path}/nowhere/{i}") for i in range(100))
    _retrieve(journal, tmp_path / "out").run()
    counts = journal.counts()
    assert (counts[D.DONE], counts[D.FAILED]) == (len(contents), 100)


def test_resume_skips_done_files_and_verifies_interrupted_ones_locally(journal, tmp_path):
    contents = _replicas(tmp_path, journal, count=4)
    out = tmp_path / "out"
    _retrieve(journal, out).run()
    f0, f1, f2, f3 = next(journal.batches(D.DONE))
    with journal._tx() as db:  # a crash: two files left "downloading", one complete, one torn
        db.execute(f"UPDATE files SET state = 'downloading' WHERE id IN ({f1.id}, {f2.id})")
    (out / "cta" / f2.name).write_bytes(b"torn")
    (out / "cta" / f3.name).unlink()  # and a done file the user deleted
    storages = CountingStorages()
    _retrieve(journal, out, storages).run()
    assert storages.gets == {f2.pfn: 1, f3.pfn: 1}
    assert {p.name: p.read_bytes() for p in (out / "cta").iterdir()} == contents
    assert journal.counts()[D.DONE] == 4


def test_failed_files_are_retried_on_a_rerun(journal, tmp_path):
    contents = _replicas(tmp_path, journal, count=2)
    with journal._tx() as db:
        db.execute("UPDATE files SET adler32 = 'deadbeef' WHERE name = 'f0.fits'")
    _retrieve(journal, tmp_path / "out").run()
    with journal._tx() as db:  # the catalog was fixed meanwhile
        db.execute("UPDATE files SET adler32 = ? WHERE name = 'f0.fits'", (_adler32(contents["f0.fits"]),))
    _retrieve(journal, tmp_path / "out").run()
    assert journal.counts()[D.DONE] == 2


# --- bad input leaves nothing behind ---------------------------------------------------------------

class FakeClient:
    """A Rucio client whose metadata search matches nothing, or refuses the filter."""

    def __init__(self, refuse: bool):
        self.refuse = refuse

    def list_scopes(self):
        return ["cta"]

    def list_dids(self, scope, filters, did_type):
        if self.refuse:
            raise ValueError("FilterEngineGenericError: Generic filter engine error.")
        return iter(())


@pytest.mark.parametrize("refuse", [False, True], ids=["matches-nothing", "refused"])
def test_a_selection_without_files_is_bad_input_and_leaves_no_run(monkeypatch, tmp_path, refuse):
    from nightlake.catalog.client import Catalog
    from nightlake.flows.retrieve import run as retrieve

    monkeypatch.setattr(retrieve, "open_catalog", lambda bus, patience: Catalog(client=FakeClient(refuse),
                                                             policy=RetryPolicy(sleep=lambda s: None)))
    request = RetrieveRequest(out=tmp_path / "out", run=tmp_path / "run", filters=(("a", "b"),), scope="cta")
    with pytest.raises(BadInput):
        retrieve.run_retrieve(request, EventBus())
    assert not (tmp_path / "run").exists()


def test_status_reads_a_retrieve_run(tmp_path):
    import json as _json

    from click.testing import CliRunner

    from nightlake.cli import cli

    with DownloadJournal.create(tmp_path / "retrieve.sqlite", {"description": {"command": "retrieve",
                                                                                "out": str(tmp_path)}}) as j:
        j.add_files([{"scope": "cta", "name": f"f{i}", "bytes": 10, "adler32": None, "rse": "ONSITE",
                      "pfn": f"root://h//rucio/f{i}"} for i in range(3)])
    result = CliRunner().invoke(cli, ["status", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    status = _json.loads(result.output)
    assert (status["run"]["command"], status["files"]["total"], status["files"]["planned"]) == ("retrieve", 3, 3)


def test_a_retrieve_journal_of_schema_1_is_migrated_and_its_failures_requeued(tmp_path):
    import sqlite3

    path = tmp_path / "retrieve.sqlite"
    with DownloadJournal.create(path) as j:
        j.add_files([_row("a"), _row("b")])
    with sqlite3.connect(path) as db:  # the schema an earlier nightlake wrote: no failed_from
        db.execute("ALTER TABLE files DROP COLUMN failed_from")
        db.execute("UPDATE files SET state = 'failed', error_class = 'permanent' WHERE name = 'a'")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(ValueError, match="re-run the same command once to upgrade it"):
        DownloadJournal.open(path, read_only=True)
    with DownloadJournal.open(path) as j:
        assert j.run_meta()["schema_version"] == 2
        assert j.requeue_failed() == 1
        assert j.counts()[D.PLANNED] == 2


# --- where each file is read from ------------------------------------------------------------------

class ReplicaCatalog:
    """A catalog of one dataset `cta:ds` with files f0..f2, whose replicas are on `holding`
    ({rse: how many of the files}); records the calls, to prove which path was taken."""

    def __init__(self, holding: dict[str, int], deterministic: bool = True):
        self.holding, self.deterministic, self.calls = holding, deterministic, []

    def dataset_replicas(self, dataset):
        self.calls.append("dataset_replicas")
        return [{"rse": rse, "available_length": n, "length": 3} for rse, n in self.holding.items()]

    def rse_info(self, rse):
        return {"rse": rse, "deterministic": self.deterministic, "lfn2pfn_algorithm": "hash",
                "protocols": [{"scheme": "root", "hostname": rse.lower(), "port": 1094, "prefix": "//rucio/",
                               "impl": "rucio.rse.protocols.xrootd.Default", "extended_attributes": None,
                               "domains": {"wan": {"read": 1, "write": 1, "delete": 1}}}]}

    def replicas(self, dids, schemes, rse_expression):
        self.calls.append("list_replicas")
        return {did: {"bytes": 3, "adler32": "00000001", "pfns": {
            f"root://{rse.lower()}:1094//rucio/{did[1]}": {"rse": rse} for rse, n in self.holding.items()
            if int(did[1][1]) < n}} for did in dids}

    def rses_matching(self, expression):
        return set(expression.split("|"))


@pytest.fixture
def lfn2pfn(monkeypatch):
    """Rucio's lfn2pfn needs a Rucio configuration; the lake test proves the real one's PFNs."""
    def pfns(info, scheme, dids, operation):
        assert operation == "read"
        return {f"{d['scope']}:{d['name']}": f"{scheme}://{info['rse'].lower()}:1094//rucio/{d['name']}" for d in dids}
    monkeypatch.setattr("nightlake.flows.retrieve.replicas.pfns", pfns)


def _files() -> list[dict]:
    return [{"scope": "cta", "name": f"f{i}", "bytes": 3, "adler32": "00000001", "parent_scope": "cta",
             "parent_name": "ds"} for i in range(3)]


def test_a_dataset_held_whole_by_an_rse_gets_its_pfns_from_lfn2pfn_without_list_replicas(lfn2pfn):
    catalog = ReplicaCatalog({"ONSITE": 3})
    rows = list(ReplicaChooser(catalog, None, None).rows(_files()))
    assert catalog.calls == ["dataset_replicas"]
    assert [(r["rse"], r["pfn"].split("//rucio/")[0]) for r in rows] == [("ONSITE", "root://onsite:1094")] * 3
    assert all(r["pfn"].endswith("/" + r["name"]) and r["adler32"] == "00000001" for r in rows)


@pytest.mark.parametrize(("holding", "from_rse", "expression"), [
    ({"ONSITE": 2}, None, None),                     # no RSE holds it whole
    ({"A": 1, "B": 3}, None, None),                  # the first RSE by name holds part of it
    ({"A": 3, "B": 1}, "B", None),                   # the preferred RSE holds part of it
    ({"A": 3, "B": 3}, None, "B|C"),                 # complete on A, but A is not in the expression: B
])
def test_otherwise_each_file_is_asked_with_list_replicas_and_the_choice_is_the_same(holding, from_rse, expression,
                                                                                   lfn2pfn):
    catalog = ReplicaCatalog(holding)
    rows = list(ReplicaChooser(catalog, expression, from_rse).rows(_files()))
    fast = "list_replicas" not in catalog.calls
    assert fast == (expression is not None)  # only the last case is whole on an allowed RSE
    allowed = catalog.rses_matching(expression) if expression else holding
    for r in rows:
        on = sorted(rse for rse, n in holding.items() if int(r["name"][1]) < n and rse in allowed)
        assert r["rse"] == (from_rse if from_rse in on else min(on, default=None))


def test_a_non_deterministic_rse_is_asked_with_list_replicas():
    catalog = ReplicaCatalog({"ONSITE": 3}, deterministic=False)
    assert {r["rse"] for r in ReplicaChooser(catalog, None, None).rows(_files())} == {"ONSITE"}
    assert catalog.calls == ["dataset_replicas", "list_replicas"]


def test_files_named_alone_are_asked_with_list_replicas():
    catalog = ReplicaCatalog({"ONSITE": 3})
    rows = list(ReplicaChooser(catalog, None, None).rows([{"scope": "cta", "name": "f0"}]))
    assert catalog.calls == ["list_replicas"] and rows[0]["pfn"] == "root://onsite:1094//rucio/f0"
