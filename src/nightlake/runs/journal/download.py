"""The download journal of a retrieve run: one SQLite file (`RUNDIR/retrieve.sqlite`).

The ingest journal's state machine is about uploads; a download has a simpler life, so it has
its own small journal with the same habits (WAL, bulk transitions, keyset batches)::

    planned ─> downloading ─> done
    reconcile:  downloading ─> planned | done     (a crash: check the local file)
                done        ─> planned             (the local file is gone or has the wrong size)
    failure:    planned | downloading ─> failed ─(requeue_failed)─> planned

`downloading` is the intent: the bytes may be in a temporary file, or already verified and
renamed to the final name if the crash came between the rename and the journal write. Every
file is journaled (with its PFN, size and adler32 from Rucio) before any byte moves, so a
re-run of the same command resumes from the journal alone, without asking Rucio again.

`attempts` counts downloads started; a resumed run re-downloads only what was in flight.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nightlake.runs.journal.base import SQLiteJournal

SCHEMA_VERSION = 1


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


class IllegalTransition(Exception):
    """A bulk transition met files in a state it may not leave from; nothing was changed."""


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


_COLUMNS = ", ".join(Download.__dataclass_fields__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, scope TEXT NOT NULL, name TEXT NOT NULL,
    bytes INTEGER NOT NULL, adler32 TEXT, rse TEXT, pfn TEXT,
    state TEXT NOT NULL DEFAULT 'planned', attempts INTEGER NOT NULL DEFAULT 0,
    error_class TEXT, error_message TEXT, updated_at REAL NOT NULL,
    UNIQUE (scope, name));
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, id);
"""


class DownloadJournal(SQLiteJournal):
    """The journal of one retrieve run; `create` or `open`, then close (or use `with`)."""

    SCHEMA = _SCHEMA
    SCHEMA_VERSION = SCHEMA_VERSION

    # --- files ----------------------------------------------------------------------------------

    def add_files(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Plan files ({scope, name, bytes, adler32, rse, pfn}); a DID already journaled is
        skipped (a file in two selected datasets is fetched once). Streams; returns how many were new."""
        sql = ("INSERT OR IGNORE INTO files (scope, name, bytes, adler32, rse, pfn, updated_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
        return self._insert(sql, ((r["scope"], r["name"], r["bytes"], r["adler32"], r["rse"], r["pfn"], time.time())
                                  for r in rows))

    def batches(self, state: DownloadState, size: int = 1000) -> Iterator[list[Download]]:
        """Files in `state` in id order, `size` at a time; marking files while walking is safe
        (the next page starts after the last id seen)."""
        return self._pages(_COLUMNS, [state.value], size,
                           lambda row: Download(*row[:7], DownloadState(row[7]), *row[8:]))

    def mark(self, ids: Iterable[int], state: DownloadState) -> int:
        """Move files to `state`, all or none (IllegalTransition). Entering `downloading` counts
        an attempt; entering `planned` or `done` clears the last error."""
        allowed = ALLOWED_FROM[state]
        ids = list(ids)
        attempt = 1 if state is D.DOWNLOADING else 0
        sql = (f"UPDATE files SET state = ?, attempts = attempts + ?, error_class = NULL, "
               f"error_message = NULL, updated_at = ? WHERE id = ? "
               f"AND state IN ({','.join('?' * len(allowed))})")
        now, sources = time.time(), [s.value for s in allowed]
        with self._tx() as db:  # raising inside rolls the whole transition back
            before = db.total_changes
            db.executemany(sql, [(state.value, attempt, now, i, *sources) for i in ids])
            if db.total_changes - before != len(ids):
                raise IllegalTransition(f"some of {len(ids)} file(s) cannot move to {state.value} "
                                        f"(allowed from {[s.value for s in allowed]})")
        return len(ids)

    def fail(self, ids: Iterable[int], error_class: Any, message: str) -> int:
        """Record a failure with its class and original message (errors are data)."""
        error_class = getattr(error_class, "value", error_class)
        with self._tx() as db:
            before = db.total_changes
            db.executemany("UPDATE files SET state = 'failed', error_class = ?, error_message = ?, "
                           "updated_at = ? WHERE id = ? AND state IN ('planned', 'downloading')",
                           [(error_class, message, time.time(), i) for i in ids])
            return db.total_changes - before

    def requeue_failed(self) -> int:
        """Give every failed file another go on a re-run."""
        with self._tx() as db:
            before = db.total_changes
            db.execute("UPDATE files SET state = 'planned', error_class = NULL, error_message = NULL, "
                       "updated_at = ? WHERE state = 'failed'", (time.time(),))
            return db.total_changes - before

    def counts(self) -> dict[DownloadState, int]:
        return self._per_state("COUNT(*)")

    def bytes_by_state(self) -> dict[DownloadState, int]:
        return self._per_state("COALESCE(SUM(bytes), 0)")

    def _per_state(self, aggregate: str) -> dict[DownloadState, int]:
        rows = super()._per_state(aggregate)
        return {s: rows.get(s.value, 0) for s in DownloadState}
