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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nightlake.runs.journal.base import SQLiteJournal

SCHEMA_VERSION = 1
SQLITE_MAX_VARS = 990  # Rucio's SQLite limit too; keeps IN (...) lists portable


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
    S.QUARANTINED: (S.PLANNED, S.UPLOADED),
}
FAILABLE = tuple(s for s in FileState if s not in TERMINAL)


class DatasetState(enum.Enum):
    PLANNED = "planned"
    CREATED = "created"
    CLOSED = "closed"


class RuleState(enum.Enum):
    PLANNED = "planned"
    CREATED = "created"  # rule_id known


class IllegalTransition(Exception):
    """A bulk transition met files in a state it may not leave from; nothing was changed."""


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


_FILE_COLUMNS = ", ".join(FileRecord.__dataclass_fields__)
_NEW_FILE_KEYS = ("scope", "name", "dataset", "source", "bytes", "adler32", "meta")
_UPDATABLE = {"rse", "pfn", "adler32", "error_class", "error_message"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL, name TEXT NOT NULL, dataset TEXT NOT NULL,
    source TEXT NOT NULL, bytes INTEGER NOT NULL, adler32 TEXT, meta TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'planned', rse TEXT, pfn TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, error_class TEXT, error_message TEXT, failed_from TEXT,
    updated_at REAL NOT NULL,
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


class Journal(SQLiteJournal):
    """The journal of one ingest run. Build with `Journal.create` or `Journal.open`; close when done."""

    SCHEMA = _SCHEMA
    SCHEMA_VERSION = SCHEMA_VERSION

    # --- files -------------------------------------------------------------------------------

    def add_files(self, records: Iterable[Mapping[str, Any] | Any]) -> int:
        """Insert planned files (mappings or objects with the `_NEW_FILE_KEYS`); return how many
        were new. Idempotent: a (scope, name) already journaled is skipped, whatever its state,
        so re-planning a resumed run adds nothing twice. Streams: commits in chunks.
        """
        sql = ("INSERT OR IGNORE INTO files (scope, name, dataset, source, bytes, adler32, meta, "
               "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        return self._insert(sql, (_new_file_row(r) for r in records))

    def batches(self, states: FileState | Sequence[FileState], size: int = SQLITE_MAX_VARS
                ) -> Iterator[list[FileRecord]]:
        """Files in `states`, in id order, `size` at a time. Safe to `mark` files while walking:
        the next page starts after the last id seen, so no file is skipped or seen twice.
        """
        states = (states,) if isinstance(states, FileState) else tuple(states)
        return self._pages(_FILE_COLUMNS, [s.value for s in states], size, _file_record)

    def uncertain(self, size: int = SQLITE_MAX_VARS) -> Iterator[list[FileRecord]]:
        """Files whose last side effect may or may not have happened: reconcile these on resume."""
        return self.batches(UNCERTAIN, size)

    def mark(self, ids: Iterable[int], state: FileState, **fields: Any) -> int:
        """Move `ids` to `state`, setting the same `fields` (rse, pfn, ...) on each; all or none."""
        return self.mark_each(state, ({"id": i, **fields} for i in ids))

    def mark_each(self, state: FileState, updates: Iterable[Mapping[str, Any]]) -> int:
        """Move files to `state` with per-file fields, e.g. {"id": 7, "pfn": ..., "adler32": ...}.

        One transaction; raises IllegalTransition (and changes nothing) if any file is not in a
        state `state` may be entered from. A field given as None keeps its value: a transition
        never erases what is known (pfn, adler32). Returns the number of files moved.
        """
        allowed = ALLOWED_FROM[state]
        updates = list(updates)
        keys = sorted({k for u in updates for k in u} - {"id"})
        if unknown := set(keys) - _UPDATABLE:
            raise ValueError(f"mark: cannot set {sorted(unknown)}")
        if not updates:
            return 0
        sets = "".join(f", {k} = COALESCE(?, {k})" for k in keys)
        sql = (f"UPDATE files SET state = ?, updated_at = ?{sets} WHERE id = ? "
               f"AND state IN ({','.join('?' * len(allowed))})")
        now = time.time()
        rows = [(state.value, now, *(u.get(k) for k in keys), u["id"], *(s.value for s in allowed))
                for u in updates]
        try:
            with self._tx() as db:
                before = db.total_changes
                db.executemany(sql, rows)
                moved = db.total_changes - before
                if moved != len(rows):
                    raise IllegalTransition(state)
        except IllegalTransition:  # rolled back: explain from the states as they still are
            raise IllegalTransition(self._explain([u["id"] for u in updates], state)) from None
        return moved

    def fail(self, files: Iterable[int | FileRecord], error_class: Any, message: str) -> int:
        """Mark files failed with their error class and message; count one more attempt each.

        Files already done, failed or quarantined are left alone; returns how many were failed.
        """
        ids = [f.id if isinstance(f, FileRecord) else f for f in files]
        error_class = getattr(error_class, "value", error_class)
        sql = (f"UPDATE files SET failed_from = state, state = 'failed', attempts = attempts + 1, "
               f"error_class = ?, error_message = ?, updated_at = ? WHERE id = ? "
               f"AND state IN ({','.join('?' * len(FAILABLE))})")
        now, failable = time.time(), [s.value for s in FAILABLE]
        with self._tx() as db:
            before = db.total_changes
            db.executemany(sql, [(error_class, message, now, i, *failable) for i in ids])
            return db.total_changes - before

    def quarantine(self, ids: Iterable[int], reason: str) -> int:
        """Set files aside (e.g. missing required metadata) with the reason; terminal."""
        return self.mark(ids, S.QUARANTINED, error_class="quarantine", error_message=reason)

    def requeue_failed(self) -> int:
        """Give every failed file another go from the state it failed in; return how many."""
        with self._tx() as db:
            before = db.total_changes
            db.execute("UPDATE files SET state = failed_from, failed_from = NULL, "
                       "updated_at = ? WHERE state = 'failed'", (time.time(),))
            return db.total_changes - before

    def counts(self) -> dict[FileState, int]:
        """Number of files per state, every state present."""
        return self._per_state("COUNT(*)")

    def bytes_by_state(self) -> dict[FileState, int]:
        return self._per_state("COALESCE(SUM(bytes), 0)")

    def _per_state(self, aggregate: str) -> dict[FileState, int]:
        rows = super()._per_state(aggregate)
        return {s: rows.get(s.value, 0) for s in FileState}

    def _explain(self, ids: list[int], state: FileState) -> str:
        """Name the files a refused transition stumbled on, with the state they are in."""
        allowed = {s.value for s in ALLOWED_FROM[state]}
        found: dict[int, str] = {}
        with self._lock:
            for start in range(0, len(ids), SQLITE_MAX_VARS):
                chunk = ids[start:start + SQLITE_MAX_VARS]
                found.update(self._db.execute(f"SELECT id, state FROM files WHERE id IN "
                                              f"({','.join('?' * len(chunk))})", chunk))
        seen: set[int] = set()
        bad = []
        for i in ids:
            why = "listed twice" if i in seen else found.get(i, "missing")
            seen.add(i)
            if why not in allowed:
                bad.append((i, why))
        sample = ", ".join(f"{i}:{s}" for i, s in bad[:5])
        return (f"{len(bad)} file(s) cannot move to {state.value} (allowed from "
                f"{sorted(allowed)}): {sample}{' ...' if len(bad) > 5 else ''}")

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
    scope, name, dataset, source, size, adler32, meta = (get(k) for k in _NEW_FILE_KEYS)
    return (scope, name, dataset, str(source), int(size), adler32, json.dumps(meta or {}),
            time.time())


def _file_record(row: tuple[Any, ...]) -> FileRecord:
    (id_, scope, name, dataset, source, size, adler32, meta, state, rse, pfn, attempts,
     error_class, error_message, failed_from, updated_at) = row
    return FileRecord(id_, scope, name, dataset, source, size, adler32, json.loads(meta),
                      FileState(state), rse, pfn, attempts, error_class, error_message,
                      FileState(failed_from) if failed_from else None, updated_at)
