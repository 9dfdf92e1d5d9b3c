"""A run directory: everything about one run, so that copying it is enough to report on it.

    RUNDIR/run.json                      what ran: the command's description (checked on every re-run)
    RUNDIR/journal.sqlite                an ingest's journal (see `journal.ingest`)
    RUNDIR/retrieve.sqlite               or a retrieve's (see `journal.download`)
    RUNDIR/events.jsonl                  the event log the report reads
    RUNDIR/summary.json                  the outcome: counts, bytes, failed files with their errors

Every kind of run is opened the same way (`RunDir.open`): a new directory gets a new journal; an
existing one must hold the same run (its identity keys match), which is what makes a re-run a
resume; anything else is refused before a byte moves.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.runs.journal.base import SQLiteJournal
from nightlake.runs.journal.download import DownloadJournal
from nightlake.runs.journal.ingest import IngestJournal


@dataclass(frozen=True)
class RunKind:
    """One kind of run: its journal, and what must match for a re-run to be a resume."""

    command: str
    journal_name: str
    journal_class: type[SQLiteJournal]
    identity: tuple[str, ...] | None  # keys of the description; None: all of it


INGEST = RunKind("ingest", "journal.sqlite", IngestJournal,
                 ("command", "source", "rse", "scope", "dataset", "vo", "in_place"))
RETRIEVE = RunKind("retrieve", "retrieve.sqlite", DownloadJournal, None)
# A daemon's run is an ingest's journal fed batch by batch: status and report read it as an ingest
# (`kind()` finds INGEST), while a re-start must watch the same directory for the same RSE and scope.
DAEMON = RunKind("daemon", "journal.sqlite", IngestJournal, ("command", "watch", "rse", "scope"))
KINDS = (INGEST, RETRIEVE)


DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # what SQLite says of a file that is no (intact) database


def _unreadable(path: Path, exc: Exception) -> str:
    reason = str(exc).removeprefix(f"{path}: ")
    return f"{path}: not a journal this nightlake can read ({reason})"


@dataclass(frozen=True)
class RunDir:
    path: Path

    events = property(lambda self: self.path / "events.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    description = property(lambda self: self.path / "run.json")

    def journal(self, kind: RunKind = INGEST) -> Path:
        return self.path / kind.journal_name

    def open(self, kind: RunKind, description: dict[str, Any]) -> Any:
        """The run's journal: a new one, or the existing one when `description` is the same run."""
        if self.journal(kind).exists():
            self._check_same_run(kind, description)
            return self._resume(kind)
        if self.path.exists() and any(self.path.iterdir()):
            raise BadInput(f"{self.path} is not empty and holds no {kind.command} run; use a new --run directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.description.write_text(json.dumps(description, indent=2, default=str) + "\n")
        return kind.journal_class.create(self.journal(kind), {"description": description})

    def _resume(self, kind: RunKind) -> Any:
        """The journal of the run being resumed, checked whole first (SQLite's quick_check: 0.85 s
        for a 500,000-file journal of 155 MB): a damaged one is one line naming it before anything
        is uploaded or registered, since SQLite reads pages lazily and would find out mid-run."""
        path = self.journal(kind)
        try:
            journal = kind.journal_class.open(path)
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise BadInput(_unreadable(path, exc)) from None
        try:
            journal.check_intact()
        except sqlite3.DatabaseError as exc:
            journal.close()
            raise BadInput(_unreadable(path, exc)) from None
        return journal

    def _check_same_run(self, kind: RunKind, description: dict[str, Any]) -> None:
        saved = json.loads(self.description.read_text())
        for key in kind.identity or description:
            if saved.get(key) != description.get(key):
                raise BadInput(f"{self.path} holds another {kind.command} run ({key}: {saved.get(key)!r}, "
                               f"now {description.get(key)!r}); use a new --run directory")

    def kind(self) -> RunKind:
        """Which kind of run this directory holds, for status and report."""
        found = next((kind for kind in KINDS if self.journal(kind).exists()), None)
        if found is None:
            raise BadInput(f"{self.path} holds no nightlake run (no {' or '.join(k.journal_name for k in KINDS)})")
        return found

    @contextlib.contextmanager
    def load(self, kind: RunKind | None = None, writable: bool = False) -> Iterator[Any]:
        """An existing run's journal for the block: read-only for status and report, which never
        write; `writable` for commands that add to a finished run (`rules add`).

        A file that is no journal this nightlake reads (empty, truncated, garbled, another SQLite
        database, another schema) is one line naming it, whether opening it or a later query
        finds out: SQLite reads pages lazily, so a truncated journal may open and fail later."""
        kind = kind or self.kind()
        path = self.journal(kind)
        if not path.exists():
            raise BadInput(f"{self.path} holds no {kind.command} run (no {kind.journal_name})")
        try:
            journal = kind.journal_class.open(path, read_only=not writable)
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise BadInput(_unreadable(path, exc)) from None
        try:
            with journal:
                yield journal
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorname not in DAMAGED:
                raise
            raise BadInput(_unreadable(path, exc)) from None

    def discard(self, kind: RunKind, keep_directory: bool) -> None:
        """Remove what `open` made for a run that turned out to have nothing to do."""
        journal = self.journal(kind)
        for path in (journal, journal.with_name(journal.name + "-wal"), journal.with_name(journal.name + "-shm"),
                     self.description, self.events):
            path.unlink(missing_ok=True)
        if not keep_directory:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Atomically: a reader never sees half a summary."""
        tmp = self.summary.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        tmp.replace(self.summary)
