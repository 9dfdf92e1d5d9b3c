"""The run journal: one SQLite file (`RUNDIR/journal.sqlite`), the single source of truth.

Every side effect (bytes to storage, a call to Rucio) is bracketed by two journal writes: the
*intent* before it, the *outcome* after it. After any crash, including kill -9, the journal says
for each file either what certainly happened or that something *may* have happened; resume
reconciles the second kind against the world instead of guessing, so nothing is done twice.

File state machine (`FileState`; `ALLOWED_FROM` is the table that enforces it)::

    planned ─> uploading ─> uploaded ─> registering ─> registered ─> attached ─> done

    reconcile:  uploading   ─> planned       nothing, or a partial file, on storage
                registering ─> uploaded      Rucio does not know the replica
    in place:   planned     ─> uploaded      the source already is the replica
    set aside:  planned | uploaded ─> quarantined                       (terminal)
    failure:    any state but done ─> failed ─(requeue_failed)─> the state it failed in

- `uploading` is uncertain: the bytes may be on storage, in part or in full. Reconcile = stat the
  PFN (size and adler32): complete → `uploaded`, absent or partial → `planned` (re-upload).
- `uploaded` left by an earlier run is re-checked the same way before it is registered, because
  the bytes may have changed on storage since: a mismatch → `planned` (re-upload).
- `registering` is uncertain: the `add_replicas` batch may have been applied. Reconcile = one bulk
  query to Rucio for the batch: known replicas → `registered`, the others → `uploaded`.
- Every other state is certain. `attached` and `done` are reached with calls that are idempotent
  or pre-filtered (attach, set metadata), so they need no intent state.
- `failed` keeps the state it failed in (`failed_from`), its error class, message and attempts;
  `requeue_failed()` puts it back there. `quarantined` (missing metadata, bad FITS) is terminal.

`mark()` enforces this machine: a transition from the wrong state raises `IllegalTransition` and
changes nothing, which turns a pipeline bug into an error instead of a duplicate upload.

Durability, threads and readers: see `sqlite_journal` (WAL, one connection under a lock).

Bulk everywhere: inserts and transitions are `executemany` in one transaction; reads are keyset
pages (`id > last ORDER BY id LIMIT n`), so 500,000 files never sit in memory at once.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nightlake.runs.journal.base import SQLiteJournal
from nightlake.runs.journal.states import SQLITE_MAX_VARS

SCHEMA_VERSION = 2
MIGRATIONS = {1: "ALTER TABLE files ADD COLUMN mtime_ns INTEGER"}  # 2: the source's mtime when planned


class FileState(enum.Enum):
    PLANNED = "planned"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    REGISTERING = "registering"
    REGISTERED = "registered"
    ATTACHED = "attached"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


S = FileState
UNCERTAIN = (S.UPLOADING, S.REGISTERING)
TERMINAL = (S.DONE, S.FAILED, S.QUARANTINED)
# target state -> states it may be entered from
ALLOWED_FROM: dict[FileState, tuple[FileState, ...]] = {
    S.PLANNED: (S.UPLOADING, S.UPLOADED),
    S.UPLOADING: (S.PLANNED,),
    S.UPLOADED: (S.PLANNED, S.UPLOADING, S.REGISTERING),
    S.REGISTERING: (S.UPLOADED,),
    S.REGISTERED: (S.REGISTERING,),
    S.ATTACHED: (S.REGISTERED,),
    S.DONE: (S.ATTACHED,),
    S.QUARANTINED: (S.PLANNED, S.UPLOADING, S.UPLOADED),  # from uploading: bad FITS, its put undone
}
FAILABLE = tuple(s for s in FileState if s not in TERMINAL)


class DatasetState(enum.Enum):
    PLANNED = "planned"
    CREATED = "created"
    CLOSED = "closed"


class RuleState(enum.Enum):
    PLANNED = "planned"
    CREATED = "created"  # rule_id known


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: int
    scope: str
    name: str
    dataset: str  # the dataset's name; a file's dataset lives in the file's scope
    source: str  # local path, streamed-payload key, or PFN for in-place registration
    bytes: int
    adler32: str | None
    meta: dict[str, Any]
    state: FileState
    rse: str | None
    pfn: str | None
    attempts: int
    error_class: str | None
    error_message: str | None
    failed_from: FileState | None
    updated_at: float
    mtime_ns: int | None = None  # a local source's modification time when it was planned


_FILE_COLUMNS = ", ".join(FileRecord.__dataclass_fields__)
_NEW_FILE_KEYS = ("scope", "name", "dataset", "source", "bytes", "adler32", "meta", "mtime_ns")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL, name TEXT NOT NULL, dataset TEXT NOT NULL,
    source TEXT NOT NULL, bytes INTEGER NOT NULL, adler32 TEXT, meta TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'planned', rse TEXT, pfn TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, error_class TEXT, error_message TEXT, failed_from TEXT,
    updated_at REAL NOT NULL, mtime_ns INTEGER,
    UNIQUE (scope, name));
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, id);
CREATE INDEX IF NOT EXISTS files_by_dataset ON files (scope, dataset, state);
CREATE TABLE IF NOT EXISTS datasets (
    scope TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'planned',
    updated_at REAL NOT NULL, UNIQUE (scope, name));
CREATE TABLE IF NOT EXISTS rules (
    scope TEXT NOT NULL, dataset TEXT NOT NULL, rse_expression TEXT NOT NULL,
    copies INTEGER NOT NULL DEFAULT 1, lifetime INTEGER, activity TEXT,
    rule_id TEXT, state TEXT NOT NULL DEFAULT 'planned', updated_at REAL NOT NULL,
    UNIQUE (scope, dataset, rse_expression));
"""


class IngestJournal(SQLiteJournal):
    """The journal of one ingest run. Build with `create` or `open`; close when done."""

    SCHEMA = _SCHEMA
    SCHEMA_VERSION = SCHEMA_VERSION
    MIGRATIONS = MIGRATIONS
    State = FileState
    ALLOWED_FROM = ALLOWED_FROM
    FAILABLE = FAILABLE
    ATTEMPT_ON = frozenset({FileState.FAILED})  # attempts counts the failures
    UPDATABLE = frozenset({"rse", "pfn", "adler32", "error_class", "error_message"})
    COLUMNS = _FILE_COLUMNS

    @staticmethod
    def row(values: tuple) -> FileRecord:
        return _file_record(values)

    # --- files -------------------------------------------------------------------------------

    def add_files(self, records: Iterable[Mapping[str, Any] | Any]) -> int:
        """Insert planned files (mappings or objects with the `_NEW_FILE_KEYS`); return how many
        were new. Idempotent: a (scope, name) already journaled is skipped, whatever its state,
        so re-planning a resumed run adds nothing twice. Streams: commits in chunks.
        """
        sql = ("INSERT OR IGNORE INTO files (scope, name, dataset, source, bytes, adler32, meta, mtime_ns, "
               "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        return self._insert(sql, (_new_file_row(r) for r in records))

    def uncertain(self, size: int = SQLITE_MAX_VARS) -> Iterator[list[FileRecord]]:
        """Files whose last side effect may or may not have happened: reconcile these on resume."""
        return self.batches(UNCERTAIN, size)

    def records_of(self, scope: str, names: Iterable[str]) -> dict[str, FileRecord]:
        """The journaled record of each of these names (absent: never journaled), for a daemon that
        must not plan a file twice when a rescan finds its trigger again."""
        found: dict[str, FileRecord] = {}
        names = list(names)
        for at in range(0, len(names), SQLITE_MAX_VARS - 1):
            chunk = names[at:at + SQLITE_MAX_VARS - 1]
            rows = self._query(f"SELECT {self.COLUMNS} FROM files WHERE scope = ? AND name IN "
                               f"({', '.join('?' * len(chunk))})", (scope, *chunk))
            found.update((record.name, record) for record in map(self.row, rows))
        return found

    def last_activity(self) -> dict[tuple[str, str], float]:
        """When each dataset's files last changed state: how long its observation has been quiet."""
        rows = self._query("SELECT scope, dataset, MAX(updated_at) FROM files GROUP BY scope, dataset")
        return {(scope, dataset): at for scope, dataset, at in rows}

    def quarantine(self, ids: Iterable[int], reason: str) -> int:
        """Set files aside (e.g. missing required metadata) with the reason; terminal."""
        return self.mark(ids, S.QUARANTINED, error_class="quarantine", error_message=reason)

    # --- datasets and rules ------------------------------------------------------------------

    def add_datasets(self, dids: Iterable[tuple[str, str]]) -> int:
        """Plan datasets as (scope, name); idempotent. Returns how many were new."""
        now = time.time()
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO datasets (scope, name, updated_at) VALUES (?, ?, ?)",
                           ((scope, name, now) for scope, name in dids))
            return db.total_changes - before

    def settled_datasets(self, dids: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of these datasets, those whose files are all done or set aside: ready for rules and closing."""
        sql = ("SELECT 1 FROM files WHERE scope = ? AND dataset = ? "
               "AND state NOT IN ('done', 'quarantined') LIMIT 1")
        with self._lock:
            return {did for did in dids if self._db.execute(sql, did).fetchone() is None}

    def dataset_files(self, scope: str, dataset: str) -> list[FileRecord]:
        """The files a dataset of the run should hold (a dataset has thousands at most)."""
        return [self.row(r) for r in self._query(f"SELECT {self.COLUMNS} FROM files WHERE scope = ? AND dataset = ? "
                                                 f"ORDER BY id", (scope, dataset))]

    def mark_datasets(self, dids: Iterable[tuple[str, str]], state: DatasetState) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE datasets SET state = ?, updated_at = ? WHERE scope = ? AND name = ?",
                           ((state.value, now, scope, name) for scope, name in dids))

    def datasets(self, state: DatasetState | None = None) -> list[tuple[str, str, DatasetState]]:
        """(scope, name, state) of the run's datasets: a night has hundreds, not thousands."""
        sql, args = "SELECT scope, name, state FROM datasets", ()
        if state is not None:
            sql, args = sql + " WHERE state = ?", (state.value,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY scope, name", args).fetchall()
        return [(scope, name, DatasetState(s)) for scope, name, s in rows]

    def add_rule(self, scope: str, dataset: str, rse_expression: str, copies: int = 1,
                 lifetime: int | None = None, activity: str | None = None) -> bool:
        """Plan a replication rule on a dataset; idempotent per (scope, dataset, rse_expression)."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO rules (scope, dataset, rse_expression, copies, lifetime, "
                "activity, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (scope, dataset, rse_expression, copies, lifetime, activity, time.time()))
            return cursor.rowcount == 1

    def mark_rule(self, scope: str, dataset: str, rse_expression: str, rule_id: str,
                  state: RuleState = RuleState.CREATED) -> None:
        with self._tx() as db:
            db.execute("UPDATE rules SET rule_id = ?, state = ?, updated_at = ? WHERE scope = ? "
                       "AND dataset = ? AND rse_expression = ?",
                       (rule_id, state.value, time.time(), scope, dataset, rse_expression))

    def rules(self, state: RuleState | None = None) -> list[dict[str, Any]]:
        sql, args = ("SELECT scope, dataset, rse_expression, copies, lifetime, activity, rule_id, "
                     "state FROM rules"), ()
        if state is not None:
            sql, args = sql + " WHERE state = ?", (state.value,)
        with self._lock:
            cursor = self._db.execute(sql + " ORDER BY scope, dataset, rse_expression", args)
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]


def _new_file_row(record: Mapping[str, Any] | Any) -> tuple[Any, ...]:
    get = record.get if isinstance(record, Mapping) else lambda k: getattr(record, k, None)
    scope, name, dataset, source, size, adler32, meta, mtime_ns = (get(k) for k in _NEW_FILE_KEYS)
    return (scope, name, dataset, str(source), int(size), adler32, json.dumps(meta or {}), mtime_ns,
            time.time())


def _file_record(row: tuple[Any, ...]) -> FileRecord:
    (id_, scope, name, dataset, source, size, adler32, meta, state, rse, pfn, attempts,
     error_class, error_message, failed_from, updated_at, mtime_ns) = row
    return FileRecord(id_, scope, name, dataset, source, size, adler32, json.loads(meta),
                      FileState(state), rse, pfn, attempts, error_class, error_message,
                      FileState(failed_from) if failed_from else None, updated_at, mtime_ns)
