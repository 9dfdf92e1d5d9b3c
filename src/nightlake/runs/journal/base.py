"""What every nightlake journal shares: one SQLite file in WAL mode, all-or-nothing transactions,
run metadata, streamed inserts, keyset pages, and the one state-machine helper.

A journal is written by one process at a time (the run) and read by others (`status`, `report`)
without blocking them, thanks to WAL; readers open it read-only. `synchronous=NORMAL`: a committed
transaction survives a crash of the process; an OS crash may drop the last few, which leaves files
in an *earlier* state, which resume reconciles anyway. One connection is shared by the run's
threads under a lock, so every reader in the process sees every write.
The state machine every journal shares is in `states`.
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

from nightlake.runs.journal.states import (
    SQLITE_MAX_VARS,
    StateMachine,
)

INSERT_CHUNK = 20_000  # rows per transaction when streaming records in
Self = TypeVar("Self", bound="SQLiteJournal")


class SQLiteJournal(StateMachine):
    """Subclasses set SCHEMA (DDL with a `meta` and a `files` table with `state`, `attempts`,
    `error_class`, `error_message`, `failed_from`, `updated_at`), SCHEMA_VERSION, MIGRATIONS
    (version -> DDL that brings a journal of that version to the next) and their `StateMachine`."""

    SCHEMA: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, str]] = {}
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
        try:
            version = journal.run_meta().get("schema_version")
        except sqlite3.DatabaseError:
            journal.close()
            raise
        if version is None:
            journal.close()
            raise ValueError(f"{path}: no schema version, so not a nightlake journal")
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

    def check_intact(self) -> None:
        """sqlite3.DatabaseError unless SQLite's quick_check finds every page and index whole."""
        problems = [row[0] for row in self._query("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"damaged: {'; '.join(problems)}")

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
