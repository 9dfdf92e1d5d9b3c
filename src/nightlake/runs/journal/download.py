"""The download journal of a retrieve run: one SQLite file (`RUNDIR/retrieve.sqlite`).

The ingest journal's state machine is about uploads; a download has a simpler life, so it has
its own small journal on the same base (WAL, bulk transitions, keyset batches, see `base`)::

    planned ─> downloading ─> done
    reconcile:  downloading ─> planned | done     (a crash: check the local file)
                done        ─> planned             (the local file is gone or has the wrong size)
    failure:    planned | downloading ─> failed ─(requeue_failed)─> the state it failed in

`downloading` is the intent: the bytes may be in a temporary file, or already verified and
renamed to the final name if the crash came between the rename and the journal write. Every
file is journaled (with its PFN, size and adler32 from Rucio) before any byte moves, so a
re-run of the same command resumes from the journal alone, without asking Rucio again.

`attempts` counts downloads started; a resumed run re-downloads only what was in flight.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nightlake.runs.journal.base import SQLiteJournal

SCHEMA_VERSION = 2
# Version 1 requeued every failure to `planned`; version 2 remembers the state it failed in.
MIGRATIONS = {1: "ALTER TABLE files ADD COLUMN failed_from TEXT"}


class DownloadState(enum.Enum):
    PLANNED = "planned"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"


D = DownloadState
# target state -> states it may be entered from (failed is entered through `fail`)
ALLOWED_FROM: dict[DownloadState, tuple[DownloadState, ...]] = {
    D.PLANNED: (D.DOWNLOADING, D.DONE),
    D.DOWNLOADING: (D.PLANNED,),
    D.DONE: (D.DOWNLOADING,),
}


@dataclass(frozen=True, slots=True)
class Download:
    id: int
    scope: str
    name: str
    bytes: int
    adler32: str | None
    rse: str | None
    pfn: str | None  # None: Rucio has no usable replica
    state: DownloadState
    attempts: int
    error_class: str | None
    error_message: str | None
    failed_from: DownloadState | None


_COLUMNS = ", ".join(Download.__dataclass_fields__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, scope TEXT NOT NULL, name TEXT NOT NULL,
    bytes INTEGER NOT NULL, adler32 TEXT, rse TEXT, pfn TEXT,
    state TEXT NOT NULL DEFAULT 'planned', attempts INTEGER NOT NULL DEFAULT 0,
    error_class TEXT, error_message TEXT, failed_from TEXT, updated_at REAL NOT NULL,
    UNIQUE (scope, name));
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, id);
"""


class DownloadJournal(SQLiteJournal):
    """The journal of one retrieve run; `create` or `open`, then close (or use `with`)."""

    SCHEMA = _SCHEMA
    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = MIGRATIONS
    State = DownloadState
    ALLOWED_FROM = ALLOWED_FROM
    FAILABLE = (D.PLANNED, D.DOWNLOADING)
    ATTEMPT_ON = frozenset({D.DOWNLOADING})  # attempts counts the downloads started
    COLUMNS = _COLUMNS

    @staticmethod
    def row(values: tuple) -> Download:
        return _download(values)

    # --- files ----------------------------------------------------------------------------------

    def add_files(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Plan files ({scope, name, bytes, adler32, rse, pfn}); a DID already journaled is
        skipped (a file in two selected datasets is fetched once). Streams; returns how many were new."""
        sql = ("INSERT OR IGNORE INTO files (scope, name, bytes, adler32, rse, pfn, updated_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
        return self._insert(sql, ((r["scope"], r["name"], r["bytes"], r["adler32"], r["rse"], r["pfn"], time.time())
                                  for r in rows))


def _download(row: tuple) -> Download:
    *head, state, attempts, error_class, error_message, failed_from = row
    return Download(*head, DownloadState(state), attempts, error_class, error_message,
                    DownloadState(failed_from) if failed_from else None)
