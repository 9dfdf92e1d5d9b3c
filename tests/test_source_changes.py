"""A local source that changed, was replaced or was deleted between planning and upload is never
uploaded as if it were the planned file: that file fails PERMANENT with a message that says so."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from nightlake.catalog.failures import ErrorClass, classify
from nightlake.flows.ingest.run import source_opener
from nightlake.night.sources import SourceChanged, from_directory, read_unchanged
from nightlake.runs.journal.ingest import IngestJournal
from nightlake.storage import PART_SUFFIX, open_storage

DATA = b"0123456789" * 1000


@pytest.fixture
def planned(tmp_path):
    """The journal record of one walked file, as the upload gets it."""
    (tmp_path / "night").mkdir()
    (tmp_path / "night" / "a.fits").write_bytes(DATA)
    with IngestJournal.create(tmp_path / "journal.sqlite") as journal:
        journal.add_files(from_directory(tmp_path / "night", "cta"))
        (record,) = next(journal.batches(journal.State.PLANNED))
    return record


def _upload(record, tmp_path: Path):
    store = open_storage({"scheme": "file"})
    return store.put(f"file://{tmp_path}/lake/a.fits", source_opener(record), size=record.bytes)


def test_the_walk_records_each_files_mtime(planned):
    assert planned.mtime_ns == os.stat(planned.source).st_mtime_ns


def test_an_unchanged_source_uploads(planned, tmp_path):
    assert _upload(planned, tmp_path).size == len(DATA)


def test_a_same_size_change_after_planning_fails_permanently_and_leaves_no_part(planned, tmp_path):
    Path(planned.source).write_bytes(DATA[::-1])
    os.utime(planned.source, ns=(planned.mtime_ns + 1_000_000_000,) * 2)
    with pytest.raises(SourceChanged, match="changed since it was planned") as exc:
        _upload(planned, tmp_path)
    assert classify(exc.value).error_class is ErrorClass.PERMANENT
    assert not list((tmp_path / "lake").glob(f"*{PART_SUFFIX}")) and not (tmp_path / "lake" / "a.fits").exists()


def test_a_source_deleted_after_planning_fails_with_a_clear_message(planned, tmp_path):
    os.unlink(planned.source)
    with pytest.raises(SourceChanged, match="deleted since it was planned") as exc:
        _upload(planned, tmp_path)
    assert classify(exc.value).error_class is ErrorClass.PERMANENT


def test_a_fifo_put_in_place_of_the_source_is_refused_without_hanging(planned, tmp_path):
    os.unlink(planned.source)
    os.mkfifo(planned.source)
    with pytest.raises(SourceChanged, match="no longer a regular file"):
        _upload(planned, tmp_path)


def test_a_change_while_the_file_is_read_is_detected_before_the_last_byte_is_accepted(tmp_path):
    path = tmp_path / "a.fits"
    path.write_bytes(DATA)
    info = path.stat()
    chunks = read_unchanged(path, info.st_size, info.st_mtime_ns, chunk_size=1000)
    next(chunks)
    os.utime(path, ns=(info.st_mtime_ns + 5,) * 2)
    with pytest.raises(SourceChanged, match="changed while it was read"):
        list(chunks)


def test_a_journal_of_schema_1_is_migrated_and_its_files_checked_by_size_only(tmp_path, planned):
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as db:  # the schema an earlier nightlake wrote: no mtime_ns
        db.execute("ALTER TABLE files DROP COLUMN mtime_ns")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with IngestJournal.open(path) as journal:
        (record,) = next(journal.batches(journal.State.PLANNED))
    assert record.mtime_ns is None
    os.utime(record.source, ns=(1, 1))
    assert _upload(record, tmp_path).size == len(DATA)
