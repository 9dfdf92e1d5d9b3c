"""The outcome of a run as plain data (`RUNDIR/summary.json`, `status`, the command's last lines).

Both kinds of run summarise the same way: files and bytes per state from the journal, every
problem file with its error class and original message, and the session's timing; an ingest adds
its datasets and rules, a retrieve where it wrote.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nightlake.runs.journal.base import SQLiteJournal
from nightlake.runs.journal.download import DownloadJournal, DownloadState
from nightlake.runs.journal.ingest import DatasetState, FileState, IngestJournal


def ingest_summary(journal: IngestJournal, started: float | None = None,
                   failed_limit: int | None = None) -> dict[str, Any]:
    """Counts and bytes per state, datasets, rules, the failed or quarantined files, and what a
    directory source left out (`sources.Skipped`)."""
    datasets = journal.datasets()
    problems = _problems(journal, (FileState.FAILED, FileState.QUARANTINED), failed_limit,
                         lambda r: {"failed_in": r.failed_from.value if r.failed_from else None})
    return {**_states(journal, FileState.DONE),
            "datasets": {state.value: sum(1 for *_, s in datasets if s is state) for state in DatasetState},
            "rules": journal.rules(), "problems": problems,
            "skipped": journal.run_meta().get("skipped", []), **_timing(started)}


def retrieve_summary(journal: DownloadJournal, out: Path, started: float | None = None,
                     failed_limit: int | None = None) -> dict[str, Any]:
    """Counts and bytes per state, and every failed file with its error and replica."""
    problems = _problems(journal, (DownloadState.FAILED,), failed_limit, lambda r: {"rse": r.rse, "pfn": r.pfn})
    return {"command": "retrieve", "out": str(Path(out).absolute()), **_states(journal, DownloadState.DONE),
            "problems": problems, **_timing(started)}


def state_totals(journal: SQLiteJournal) -> dict[str, Any]:
    """Files and bytes per state, every known state present and any state this nightlake does not
    know added (and listed in `unknown_states`), so that no file drops out of a total."""
    counts, sizes = journal.counts(), journal.bytes_by_state()
    unknown = journal.unknown_states()
    files = {s.value: n for s, n in counts.items()} | {state: n for state, (n, _) in unknown.items()}
    size = {s.value: n for s, n in sizes.items()} | {state: b for state, (_, b) in unknown.items()}
    return {"files": {"total": sum(files.values()), **files}, "bytes": {"total": sum(size.values()), **size},
            **({"unknown_states": sorted(unknown)} if unknown else {})}


def _states(journal: SQLiteJournal, done: Any) -> dict[str, Any]:
    totals = state_totals(journal)
    total = totals["files"]["total"]
    return {**totals, "complete": total > 0 and totals["files"][done.value] == total}


def _problems(journal: SQLiteJournal, states: tuple, limit: int | None, extra) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for batch in journal.batches(states):
        problems += [{"did": f"{r.scope}:{r.name}", "state": r.state.value, "error_class": r.error_class,
                      "message": r.error_message, "attempts": r.attempts, **extra(r)} for r in batch]
        if limit is not None and len(problems) >= limit:
            return problems[:limit]
    return problems


def _timing(started: float | None) -> dict[str, Any]:
    ended = time.time()
    return {"started": started, "ended": ended, "elapsed_s": ended - started if started else None}
