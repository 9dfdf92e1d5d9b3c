"""A run directory: everything about one ingest, so that copying it is enough to report on it.

    RUNDIR/run.json         what ran: source, RSE, options, versions (checked on every re-run)
    RUNDIR/journal.sqlite   each file's state (see `journal`)
    RUNDIR/events.jsonl     the event log the report reads
    RUNDIR/summary.json     the outcome: counts, bytes, failed files with their errors
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.runs.journal.ingest import DatasetState, FileState, IngestJournal

# What must match for a re-run to be a resume of the same run.
IDENTITY_KEYS = ("command", "source", "rse", "scope", "dataset", "in_place")


@dataclass(frozen=True)
class RunDir:
    path: Path

    journal = property(lambda self: self.path / "journal.sqlite")
    events = property(lambda self: self.path / "events.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    description = property(lambda self: self.path / "run.json")

    def open(self, description: dict[str, Any]) -> IngestJournal:
        """The run's journal: a new one, or the existing one when `description` is the same run."""
        if self.journal.exists():
            saved = json.loads(self.description.read_text())
            for key in IDENTITY_KEYS:
                if saved.get(key) != description.get(key):
                    raise BadInput(f"{self.path} holds another run ({key}: {saved.get(key)!r}, "
                                   f"now {description.get(key)!r}); use a new --run directory")
            return IngestJournal.open(self.journal)
        if self.path.exists() and any(self.path.iterdir()):
            raise BadInput(f"{self.path} is not empty and holds no nightlake run; use a new --run directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.description.write_text(json.dumps(description, indent=2, default=str) + "\n")
        return IngestJournal.create(self.journal, {"description": description})

    def load(self) -> IngestJournal:
        """An existing run's journal, for status and report."""
        if not self.journal.exists():
            raise BadInput(f"{self.path} holds no nightlake run (no journal.sqlite)")
        return IngestJournal.open(self.journal)


def summarize(journal: IngestJournal, started: float | None = None, ended: float | None = None,
              failed_limit: int | None = None) -> dict[str, Any]:
    """Counts and bytes per state, datasets, rules, and every failed or quarantined file."""
    counts, sizes = journal.counts(), journal.bytes_by_state()
    problems = []
    for batch in journal.batches((FileState.FAILED, FileState.QUARANTINED)):
        problems += [{"did": f"{r.scope}:{r.name}", "state": r.state.value, "error_class": r.error_class,
                      "message": r.error_message, "attempts": r.attempts, "failed_in": r.failed_from.value
                      if r.failed_from else None} for r in batch]
        if failed_limit is not None and len(problems) >= failed_limit:
            break
    total = sum(counts.values())
    datasets = journal.datasets()
    return {
        "files": {"total": total, **{s.value: n for s, n in counts.items()}},
        "bytes": {"total": sum(sizes.values()), **{s.value: n for s, n in sizes.items()}},
        "complete": counts[FileState.DONE] == total,
        "datasets": {state.value: sum(1 for *_, s in datasets if s is state) for state in DatasetState},
        "rules": journal.rules(),
        "problems": problems,
        "started": started, "ended": ended or time.time(),
        "elapsed_s": (ended or time.time()) - started if started else None,
    }


def write_summary(run: RunDir, summary: dict[str, Any]) -> None:
    tmp = run.summary.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    tmp.replace(run.summary)
