"""How fast the journal plans, walks and transitions a night, against one-commit-per-row inserts.

Method: in one process, on one disk, with the journal's own pragmas (WAL, synchronous=NORMAL):
  1. `add_files` of N planned rows (streamed, INSERT OR IGNORE, 20,000 rows per transaction);
  2. re-planning the same N rows (must add 0);
  3. walking them with `batches(planned, 990)` and marking each batch `uploading` (one
     transaction per batch, as the pipeline does);
  4. baseline: M rows inserted into the same schema with one transaction (commit) per row.
The ratio compares rows/s of (1) with (4). Usage:
    python benchmarks/journal_throughput.py [--rows 500000] [--baseline-rows 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from nightlake.runs.journal.ingest import FileState, IngestJournal


def planned(n: int):
    for i in range(n):
        yield {"scope": "cta", "name": f"LST1/2026-01-01/run{i // 1000:05d}/f{i:07d}.fits.fz",
               "dataset": f"night-2026-01-01-run{i // 1000:05d}", "source": f"/data/f{i:07d}.fits.fz",
               "bytes": 11_000_000 + i, "meta": {"obs_id": i // 1000, "tel_id": 1}}


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def walk_and_mark(journal: IngestJournal) -> int:
    moved = 0
    for batch in journal.batches(FileState.PLANNED, 990):
        moved += journal.mark([f.id for f in batch], FileState.UPLOADING, rse="XRD1")
    return moved


def baseline(path: Path, n: int) -> None:
    """The naive way: one INSERT and one COMMIT per row."""
    journal = IngestJournal.create(path, {})
    db = journal._db
    for row in planned(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO files (scope, name, dataset, source, bytes, meta, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (row["scope"], row["name"], row["dataset"],
                                                    row["source"], row["bytes"], json.dumps(row["meta"]),
                                                    time.time()))
        db.execute("COMMIT")
    journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        journal = IngestJournal.create(Path(tmp) / "journal.sqlite", {"benchmark": True})
        t_add, added = timed(lambda: journal.add_files(planned(args.rows)))
        t_replan, readded = timed(lambda: journal.add_files(planned(args.rows)))
        t_walk, moved = timed(lambda: walk_and_mark(journal))
        journal.close()
        t_base, _ = timed(lambda: baseline(Path(tmp) / "baseline.sqlite", args.baseline_rows))
    assert added == moved == args.rows and readded == 0
    rate = {"add_files": args.rows / t_add, "replan": args.rows / t_replan,
            "walk_and_mark": args.rows / t_walk, "baseline_commit_per_row": args.baseline_rows / t_base}
    result = {"method": "same process, same disk, WAL + synchronous=NORMAL",
              "inputs": {"rows": args.rows, "baseline_rows": args.baseline_rows, "batch": 990,
                         "python": sys.version.split()[0]},
              "rows_per_s": {k: round(v) for k, v in rate.items()},
              "ratio_add_files_vs_baseline": round(rate["add_files"] / rate["baseline_commit_per_row"], 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"method: {result['method']}; inputs: {result['inputs']}")
    for name, value in result["rows_per_s"].items():
        print(f"  {name:<26} {value:>10,} rows/s")
    print(f"  add_files is {result['ratio_add_files_vs_baseline']}x the one-commit-per-row baseline")


if __name__ == "__main__":
    main()
