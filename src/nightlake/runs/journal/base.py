"""What every nightlake journal shares: one SQLite file in WAL mode, all-or-nothing transactions,
run metadata, streamed inserts and keyset pages.

A journal is written by one process at a time (the run) and read by others (`status`, `report`)
without blocking them, thanks to WAL. `synchronous=NORMAL`: a committed transaction survives a
crash of the process; an OS crash may drop the last few, which leaves files in an *earlier* state,
which resume reconciles anyway. One connection is shared by the run's threads under a lock, so
every reader in the process sees every write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

INSERT_CHUNK = 20_000  # rows per transaction when streaming records in
Self = TypeVar("Self", bound="SQLiteJournal")
T = TypeVar("T")


class SQLiteJournal:
    """Subclasses set SCHEMA (DDL with a `meta` and a `files` table) and SCHEMA_VERSION."""

    SCHEMA: str = ""
    SCHEMA_VERSION: int = 1

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
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
        with journal._tx() as db:
            for statement in filter(str.strip, cls.SCHEMA.split(";")):
                db.execute(statement)
        journal.set_meta(schema_version=cls.SCHEMA_VERSION, created_at=time.time(), **(meta or {}))
        return journal

    @classmethod
    def open(cls: type[Self], path: Path | str) -> Self:
        """The existing journal at `path`, for resume, status and report."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path}")
        journal = cls(path)
        version = journal.run_meta().get("schema_version")
        if version != cls.SCHEMA_VERSION:
            journal.close()
            raise ValueError(f"{path}: journal schema {version}, this nightlake reads {cls.SCHEMA_VERSION}")
        return journal

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

    def set_meta(self, **values: Any) -> None:
        """Record run facts (spec, versions, Rucio server...), JSON-encoded."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           [(k, json.dumps(v, default=str)) for k, v in values.items()])

    def run_meta(self) -> dict[str, Any]:
        with self._lock:
            return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

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

    def _pages(self, columns: str, states: Sequence[str], size: int, row: Callable[[tuple], T]
               ) -> Iterator[list[T]]:
        """Files in `states`, in id order, `size` at a time. Safe to change states while walking:
        the next page starts after the last id seen, so no file is skipped or seen twice."""
        marks = ",".join("?" * len(states))
        sql = f"SELECT {columns} FROM files WHERE state IN ({marks}) AND id > ? ORDER BY id LIMIT ?"
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(sql, (*states, last, size)).fetchall()
            if not rows:
                return
            yield [row(r) for r in rows]
            last = rows[-1][0]

    def _per_state(self, aggregate: str) -> dict[str, int]:
        """{state: aggregate} over the files table, e.g. COUNT(*) or SUM(bytes)."""
        with self._lock:
            return dict(self._db.execute(f"SELECT state, {aggregate} FROM files GROUP BY state"))
