"""What every nightlake journal shares: one SQLite file in WAL mode, all-or-nothing transactions,
run metadata, streamed inserts, keyset pages, and the one state-machine helper.

A journal is written by one process at a time (the run) and read by others (`status`, `report`)
without blocking them, thanks to WAL; readers open it read-only. `synchronous=NORMAL`: a committed
transaction survives a crash of the process; an OS crash may drop the last few, which leaves files
in an *earlier* state, which resume reconciles anyway. One connection is shared by the run's
threads under a lock, so every reader in the process sees every write.

The state machine is the same for every run kind; a subclass only declares it:

- `State`, an enum with a `FAILED` member, and `ALLOWED_FROM` (target state -> the states it may
  be entered from). `mark`/`mark_each` enforce it in one transaction: a transition from the wrong
  state raises `IllegalTransition` and changes nothing, which turns a flow bug into an error
  instead of a duplicate transfer.
- `FAILABLE`: the states `fail` may take a file from. A failed file keeps the state it failed in
  (`failed_from`), its error class and original message; `requeue_failed` puts it back there, so
  an uncertain state goes through reconcile again.
- `ATTEMPT_ON`: entering these states counts one more attempt (FAILED: a failure is an attempt).
- `UPDATABLE`: the per-file columns a transition may set; a value given as None keeps what is known.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, TypeVar

INSERT_CHUNK = 20_000  # rows per transaction when streaming records in
SQLITE_MAX_VARS = 990  # Rucio's SQLite limit too; keeps IN (...) lists portable
Self = TypeVar("Self", bound="SQLiteJournal")


class IllegalTransition(Exception):
    """A bulk transition met files in a state it may not leave from; nothing was changed."""


class SQLiteJournal:
    """Subclasses set SCHEMA (DDL with a `meta` and a `files` table with `state`, `attempts`,
    `error_class`, `error_message`, `failed_from`, `updated_at`), SCHEMA_VERSION, MIGRATIONS
    (version -> DDL that brings a journal of that version to the next) and the state machine."""

    SCHEMA: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, str]] = {}
    State: ClassVar[type[enum.Enum]]
    ALLOWED_FROM: ClassVar[Mapping[Any, tuple]]
    FAILABLE: ClassVar[tuple]
    ATTEMPT_ON: ClassVar[frozenset] = frozenset()
    UPDATABLE: ClassVar[frozenset[str]] = frozenset()
    COLUMNS: ClassVar[str]  # of the files table, in the order `row` takes them, `id` first

    @staticmethod
    def row(values: tuple) -> Any:
        """One file as the subclass's record type."""
        raise NotImplementedError

    def __init__(self, path: Path, read_only: bool = False):
        self.path, self.read_only = path, read_only
        self._lock = threading.RLock()
        if read_only:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            return
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")

    @classmethod
    def create(cls: type[Self], path: Path | str, meta: Mapping[str, Any] | None = None) -> Self:
        """A new journal at `path` (FileExistsError if there is one: resume uses `open`)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"a journal already exists at {path}")
        journal = cls(path)
        journal._execute_script(cls.SCHEMA)
        journal.set_meta(schema_version=cls.SCHEMA_VERSION, created_at=time.time(), **(meta or {}))
        return journal

    @classmethod
    def open(cls: type[Self], path: Path | str, read_only: bool = False) -> Self:
        """The existing journal at `path`: for resume, or `read_only` for status and report. A
        journal of an older schema is migrated when opened for writing."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path}")
        journal = cls(path, read_only)
        version = journal.run_meta().get("schema_version")
        if not read_only and version in cls.MIGRATIONS:
            version = journal._migrate(version)
        if version != cls.SCHEMA_VERSION:
            journal.close()
            upgrade = "; re-run the same command once to upgrade it" if version in cls.MIGRATIONS else ""
            raise ValueError(f"{path}: journal schema {version}, this nightlake reads {cls.SCHEMA_VERSION}{upgrade}")
        return journal

    def _migrate(self, version: int) -> int:
        while version in self.MIGRATIONS:
            self._execute_script(self.MIGRATIONS[version])
            version += 1
            self.set_meta(schema_version=version)
        return version

    def _execute_script(self, script: str) -> None:
        with self._tx() as db:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: all of it commits, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def set_meta(self, **values: Any) -> None:
        """Record run facts (spec, versions, Rucio server...), JSON-encoded."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           [(k, json.dumps(v, default=str)) for k, v in values.items()])

    def run_meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")}

    def _insert(self, sql: str, rows: Iterable[tuple]) -> int:
        """Stream rows in with INSERT OR IGNORE, INSERT_CHUNK per transaction; return how many were new."""
        rows = iter(rows)
        added = 0
        while chunk := list(islice(rows, INSERT_CHUNK)):
            with self._tx() as db:
                before = db.total_changes
                db.executemany(sql, chunk)
                added += db.total_changes - before
        return added

    def batches(self, states: enum.Enum | Sequence[enum.Enum], size: int = SQLITE_MAX_VARS) -> Iterator[list]:
        """Files in `states`, in id order, `size` at a time. Safe to `mark` files while walking:
        the next page starts after the last id seen, so no file is skipped or seen twice."""
        values = [states.value] if isinstance(states, enum.Enum) else [s.value for s in states]
        sql = (f"SELECT {self.COLUMNS} FROM files WHERE state IN ({','.join('?' * len(values))}) "
               f"AND id > ? ORDER BY id LIMIT ?")
        last = 0
        while rows := self._query(sql, (*values, last, size)):
            yield [self.row(r) for r in rows]
            last = rows[-1][0]

    # --- the state machine ------------------------------------------------------------------------

    def mark(self, ids: Iterable[int], state: enum.Enum, **fields: Any) -> int:
        """Move `ids` to `state`, setting the same `fields` on each; all or none."""
        return self.mark_each(state, ({"id": i, **fields} for i in ids))

    def mark_each(self, state: enum.Enum, updates: Iterable[Mapping[str, Any]]) -> int:
        """Move files to `state` with per-file fields, e.g. {"id": 7, "pfn": ..., "adler32": ...}.

        One transaction; raises IllegalTransition (and changes nothing) if any file is not in a
        state `state` may be entered from. A field given as None keeps its value: a transition
        never erases what is known. Returns the number of files moved.
        """
        allowed = self.ALLOWED_FROM[state]
        updates = list(updates)
        keys = sorted({k for u in updates for k in u} - {"id"})
        if unknown := set(keys) - self.UPDATABLE:
            raise ValueError(f"mark: cannot set {sorted(unknown)}")
        if not updates:
            return 0
        sets = "".join(f", {k} = COALESCE(?, {k})" for k in keys)
        sql = (f"UPDATE files SET state = ?, attempts = attempts + ?, updated_at = ?{sets} WHERE id = ? "
               f"AND state IN ({','.join('?' * len(allowed))})")
        now, attempt = time.time(), int(state in self.ATTEMPT_ON)
        rows = [(state.value, attempt, now, *(u.get(k) for k in keys), u["id"], *(s.value for s in allowed))
                for u in updates]
        try:
            with self._tx() as db:
                before = db.total_changes
                db.executemany(sql, rows)
                if db.total_changes - before != len(rows):
                    raise IllegalTransition(state)
        except IllegalTransition:  # rolled back: explain from the states as they still are
            raise IllegalTransition(self._explain([u["id"] for u in updates], state)) from None
        return len(rows)

    def fail(self, files: Iterable[Any], error_class: Any, message: str) -> int:
        """Mark files (ids or records with an `id`) failed with their error class and original
        message. Files in a state that cannot fail (done, set aside) are left alone; returns how
        many were failed."""
        ids = [getattr(f, "id", f) for f in files]
        error_class = getattr(error_class, "value", error_class)
        attempt = int(self.State.FAILED in self.ATTEMPT_ON)
        sql = (f"UPDATE files SET failed_from = state, state = ?, attempts = attempts + ?, "
               f"error_class = ?, error_message = ?, updated_at = ? WHERE id = ? "
               f"AND state IN ({','.join('?' * len(self.FAILABLE))})")
        now, failable = time.time(), [s.value for s in self.FAILABLE]
        with self._tx() as db:
            before = db.total_changes
            db.executemany(sql, [(self.State.FAILED.value, attempt, error_class, message, now, i, *failable)
                                 for i in ids])
            return db.total_changes - before

    def requeue_failed(self) -> int:
        """Give every failed file another go from the state it failed in (the first state when a
        migrated journal does not know it); return how many."""
        with self._tx() as db:
            before = db.total_changes
            db.execute("UPDATE files SET state = COALESCE(failed_from, ?), failed_from = NULL, "
                       "error_class = NULL, error_message = NULL, updated_at = ? WHERE state = ?",
                       (next(iter(self.State)).value, time.time(), self.State.FAILED.value))
            return db.total_changes - before

    def counts(self) -> dict[Any, int]:
        """Number of files per state, every state present."""
        return self._per_state("COUNT(*)")

    def bytes_by_state(self) -> dict[Any, int]:
        return self._per_state("COALESCE(SUM(bytes), 0)")

    def unknown_states(self) -> list[str]:
        """States in the journal that this nightlake does not know (a newer or damaged journal):
        readers report them instead of dropping their files."""
        known = {s.value for s in self.State}
        return [state for (state,) in self._query("SELECT DISTINCT state FROM files") if state not in known]

    def _per_state(self, aggregate: str) -> dict[Any, int]:
        rows = dict(self._query(f"SELECT state, {aggregate} FROM files GROUP BY state"))
        return {s: rows.get(s.value, 0) for s in self.State}

    def per_state_by(self, by: str) -> list[tuple]:
        """(*`by` columns, state, files, bytes) for each value of `by` (e.g. "rse" or "scope, dataset")
        and state, in one GROUP BY: per-dataset and per-RSE tables without listing a file."""
        return self._query(f"SELECT {by}, state, COUNT(*), COALESCE(SUM(bytes), 0) FROM files "
                           f"GROUP BY {by}, state ORDER BY {by}")

    def error_groups(self, states: Sequence[enum.Enum], by: str = "error_class") -> list[tuple]:
        """(*`by` columns, files, bytes, one sample message) per group of files in `states` (failed,
        set aside), largest first: what summaries and reports show, never a list of files."""
        marks, group = ",".join("?" * len(states)), by.count(",") + 1
        return self._query(f"SELECT {by}, COUNT(*), COALESCE(SUM(bytes), 0), MAX(error_message) FROM files "
                           f"WHERE state IN ({marks}) GROUP BY {by} ORDER BY {group + 1} DESC",
                           [s.value for s in states])

    def _explain(self, ids: list[int], state: enum.Enum) -> str:
        """Name the files a refused transition stumbled on, with the state they are in."""
        allowed = {s.value for s in self.ALLOWED_FROM[state]}
        found: dict[int, str] = {}
        for start in range(0, len(ids), SQLITE_MAX_VARS):
            chunk = ids[start:start + SQLITE_MAX_VARS]
            found.update(self._query(f"SELECT id, state FROM files WHERE id IN ({','.join('?' * len(chunk))})",
                                     chunk))
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
