"""The run journal: state machine, idempotent planning, bounded walks, and what survives a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nightlake.runs.journal.ingest import (
    DatasetState,
    FileState,
    IngestJournal,
    RuleState,
)
from nightlake.runs.journal.states import IllegalTransition

S = FileState


def planned(n, start=0, dataset="night-1"):
    return [{"scope": "cta", "name": f"f{i:06d}.fits", "dataset": dataset, "source": f"/data/f{i}",
             "bytes": 1000 + i, "meta": {"obs_id": i}} for i in range(start, start + n)]


@pytest.fixture
def journal(tmp_path):
    with IngestJournal.create(tmp_path / "journal.sqlite", {"spec": "tiny"}) as j:
        yield j


def ids_in(journal, state):
    return [f.id for batch in journal.batches(state) for f in batch]


def test_create_records_run_meta_and_schema_version(tmp_path):
    IngestJournal.create(tmp_path / "j.sqlite", {"spec": "tiny", "rucio": "41.5.1"}).close()
    with IngestJournal.open(tmp_path / "j.sqlite") as j:
        meta = j.run_meta()
    assert meta["spec"] == "tiny" and meta["rucio"] == "41.5.1" and meta["schema_version"] == 2


def test_create_refuses_an_existing_journal(tmp_path, journal):
    with pytest.raises(FileExistsError):
        IngestJournal.create(journal.path, {})


def test_open_refuses_a_missing_journal(tmp_path):
    with pytest.raises(FileNotFoundError):
        IngestJournal.open(tmp_path / "nope.sqlite")


def test_journal_uses_wal(journal):
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_add_files_is_idempotent_across_replanning(journal):
    assert journal.add_files(planned(10)) == 10
    assert journal.add_files(planned(15)) == 5
    assert journal.counts()[S.PLANNED] == 15


def test_replanning_does_not_reset_a_file_already_in_progress(journal):
    journal.add_files(planned(3))
    journal.mark([1], S.UPLOADING)
    journal.add_files(planned(3))
    assert ids_in(journal, S.UPLOADING) == [1]


def test_add_files_accepts_objects_and_keeps_metadata(journal):
    class Planned:
        scope, name, dataset, source, bytes, adler32, meta = "cta", "a.fits", "d", "/a", 5, "0a0b0c0d", {"k": 1}

    journal.add_files([Planned()])
    (record,), = journal.batches(S.PLANNED)
    assert (record.adler32, record.meta, record.bytes) == ("0a0b0c0d", {"k": 1}, 5)


def test_batches_walk_every_row_exactly_once_in_bounded_batches(journal):
    journal.add_files(planned(2500))
    sizes, seen = [], []
    for batch in journal.batches(S.PLANNED, size=990):
        sizes.append(len(batch))
        seen += [f.id for f in batch]
    assert max(sizes) == 990 and len(seen) == 2500 and len(set(seen)) == 2500


def test_batches_see_no_file_twice_while_files_are_marked_during_the_walk(journal):
    journal.add_files(planned(1000))
    seen = []
    for batch in journal.batches([S.PLANNED, S.UPLOADING], size=100):
        seen += [f.id for f in batch]
        journal.mark([f.id for f in batch if f.state is S.PLANNED], S.UPLOADING)
    assert sorted(seen) == list(range(1, 1001))


def test_a_file_walks_the_whole_state_machine(journal):
    journal.add_files(planned(1))
    journal.mark([1], S.UPLOADING, rse="XRD1")
    journal.mark_each(S.UPLOADED, [{"id": 1, "pfn": "root://x//f1", "adler32": "01020304"}])
    for state in (S.REGISTERING, S.REGISTERED, S.ATTACHED, S.DONE):
        journal.mark([1], state)
    (record,), = journal.batches(S.DONE)
    assert (record.rse, record.pfn, record.adler32) == ("XRD1", "root://x//f1", "01020304")


def test_a_skipped_state_raises_and_changes_nothing(journal):
    journal.add_files(planned(3))
    journal.mark([1, 2], S.UPLOADING)
    with pytest.raises(IllegalTransition, match="3:planned"):
        journal.mark([1, 2, 3], S.REGISTERING)
    assert ids_in(journal, S.UPLOADING) == [1, 2]


def test_marking_never_erases_a_known_value(journal):
    journal.add_files(planned(1))
    journal.mark_each(S.UPLOADING, [{"id": 1, "pfn": "root://x//f1"}])
    journal.mark_each(S.UPLOADED, [{"id": 1, "pfn": None, "adler32": "01020304"}])
    (record,), = journal.batches(S.UPLOADED)
    assert record.pfn == "root://x//f1"


def test_mark_refuses_unknown_fields(journal):
    journal.add_files(planned(1))
    with pytest.raises(ValueError, match="attempts"):
        journal.mark([1], S.UPLOADING, attempts=0)


def test_fail_records_class_message_and_counts_attempts(journal):
    journal.add_files(planned(2))
    journal.mark([1], S.UPLOADING)
    journal.fail([1], "transient_storage", "No write pools online")
    journal.requeue_failed()
    journal.fail([1], "permanent", "gone")
    (record,), = journal.batches(S.FAILED)
    assert (record.attempts, record.error_class, record.error_message, record.failed_from) == (
        2, "permanent", "gone", S.UPLOADING)


def test_fail_leaves_done_files_alone(journal):
    journal.add_files(planned(1))
    journal.mark([1], S.UPLOADED)
    for state in (S.REGISTERING, S.REGISTERED, S.ATTACHED, S.DONE):
        journal.mark([1], state)
    assert journal.fail([1], "permanent", "late") == 0
    assert journal.counts()[S.DONE] == 1


def test_requeue_returns_failed_files_to_the_state_they_failed_in(journal):
    journal.add_files(planned(2))
    journal.mark([2], S.UPLOADED)
    journal.mark([2], S.REGISTERING)
    journal.fail(list(journal.batches([S.PLANNED, S.REGISTERING]))[0], "transient_catalog", "503")
    assert journal.requeue_failed() == 2
    assert (ids_in(journal, S.PLANNED), ids_in(journal, S.REGISTERING)) == ([1], [2])


def test_quarantine_keeps_the_reason_and_is_terminal(journal):
    journal.add_files(planned(1))
    journal.quarantine([1], "missing OBS_ID")
    (record,), = journal.batches(S.QUARANTINED)
    assert record.error_message == "missing OBS_ID"
    with pytest.raises(IllegalTransition):
        journal.mark([1], S.UPLOADING)


def test_uncertain_yields_only_files_mid_side_effect(journal):
    journal.add_files(planned(4))
    journal.mark([1], S.UPLOADING)
    journal.mark([2], S.UPLOADED)
    journal.mark([2], S.REGISTERING)
    journal.mark([3], S.UPLOADED)
    assert [f.id for batch in journal.uncertain() for f in batch] == [1, 2]


def test_counts_and_bytes_by_state_cover_every_state(journal):
    journal.add_files(planned(3))
    journal.mark([1], S.UPLOADING)
    assert journal.counts()[S.UPLOADING] == 1 and journal.counts()[S.DONE] == 0
    assert journal.bytes_by_state()[S.PLANNED] == 1001 + 1002


def test_datasets_are_planned_once_and_move_through_their_states(journal):
    assert journal.add_datasets([("cta", "night-1"), ("cta", "night-2")]) == 2
    assert journal.add_datasets([("cta", "night-1")]) == 0
    journal.mark_datasets([("cta", "night-1")], DatasetState.CREATED)
    assert journal.datasets(DatasetState.CREATED) == [("cta", "night-1", DatasetState.CREATED)]


def test_rules_are_planned_once_and_remember_their_rule_id(journal):
    assert journal.add_rule("cta", "night-1", "OFFSITE", lifetime=86400)
    assert not journal.add_rule("cta", "night-1", "OFFSITE")
    journal.mark_rule("cta", "night-1", "OFFSITE", "abc123")
    (rule,) = journal.rules(RuleState.CREATED)
    assert (rule["rule_id"], rule["lifetime"], rule["copies"]) == ("abc123", 86400, 1)


# A value that kills the process with SIGKILL when SQLite binds it: inside `executemany`, so
# inside the journal's open transaction, after the rows before it were already written.
CRASH = textwrap.dedent("""
    import os, signal, sys
    from nightlake.runs.journal.ingest import FileState, IngestJournal

    class KillWhenBound:
        def __conform__(self, protocol):
            os.kill(os.getpid(), signal.SIGKILL)

    rows = lambda a, b: [dict(scope="cta", name=f"f{i}", dataset="d", source="/x", bytes=1)
                         for i in range(a, b)]
    j = IngestJournal.create(sys.argv[1], {})
    j.add_files(rows(0, 10))
    j.mark(range(1, 4), FileState.UPLOADING)   # committed intent: three uploads in flight
    if sys.argv[2] == "mark":
        j.mark_each(FileState.UPLOADED, [{"id": 1, "pfn": "p1"}, {"id": 2, "pfn": "p2"},
                                         {"id": 3, "pfn": KillWhenBound()}])
    else:
        j.add_files(rows(10, 15) + [dict(rows(15, 16)[0], scope=KillWhenBound())])
""")


def crash(path, during):
    proc = subprocess.run([sys.executable, "-c", CRASH, str(path), during], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    return IngestJournal.open(path)


def test_kill_9_inside_a_bulk_transition_leaves_the_last_committed_states(tmp_path):
    with crash(tmp_path / "journal.sqlite", during="mark") as j:
        counts = j.counts()
        (uncertain,) = j.uncertain()
    assert (counts[S.PLANNED], counts[S.UPLOADING], counts[S.UPLOADED]) == (7, 3, 0)
    assert [f.id for f in uncertain] == [1, 2, 3] and all(f.pfn is None for f in uncertain)


def test_kill_9_inside_planning_keeps_only_committed_files_and_replanning_completes(tmp_path):
    with crash(tmp_path / "journal.sqlite", during="add") as j:
        assert sum(j.counts().values()) == 10
        replan = [dict(scope="cta", name=f"f{i}", dataset="d", source="/x", bytes=1) for i in range(16)]
        assert j.add_files(replan) == 6


def test_threads_sharing_one_journal_lose_no_transition(journal):
    from concurrent.futures import ThreadPoolExecutor

    journal.add_files(planned(4000))
    chunks = [list(range(start, start + 100)) for start in range(1, 4001, 100)]
    with ThreadPoolExecutor(8) as pool:
        moved = sum(pool.map(lambda ids: journal.mark(ids, S.UPLOADING), chunks))
    assert moved == 4000 and journal.counts()[S.UPLOADING] == 4000
