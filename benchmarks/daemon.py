#!/usr/bin/env python3
"""Benchmark: `nightlake daemon` registering files in place as a writer drops them, against a
per-file daemon (one add_replica, one metadata call, one attach per file) on the same files' twins,
in the same run.

Method: per rate R in `--rates` (files/s), a writer (`flows/generate.write_triggered`, in this
process) writes R x `--seconds` FITS files of `--size` bytes (fsynced, then `<file>.trigger`) into
a directory of its own under ONSITE-DAQ's storage area, while `nightlake daemon` (defaults:
batches of 1000 files or 5 s, a rescan every 1 s) watches it. Per file, latency = the time its
journal record became `done` minus its data file's mtime (written just before its trigger):
p50/p95/max. Sustained files/s = files / (last done - first file written). The writer's own
achieved rate is printed: when it cannot keep up, that is the rate the daemon was offered.
Baseline: `--baseline` of the files of the first set written again under other names (a twin
directory, datasets of their own, no triggers), then registered one file at a time as a per-file
daemon does: read and verify the file (the same `describe`), `add_replica`, `set_metadata_bulk`
for that file, `attach_dids` for that file; each dataset created once. Files/s over the whole
loop. ratio = the daemon's sustained files/s at the highest rate / the per-file files/s.
Wall-clock seconds; latencies include the writer's fsync.

    .venv/bin/nightlake lake up --dir .nightlake/bench-lake --port-base 29600
    .venv/bin/python benchmarks/daemon.py [--lake-dir .nightlake/bench-lake] [--rates 10,100,1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
from nightlake.flows.daemon.describe import Naming, describe  # noqa: E402
from nightlake.flows.generate import file_path, generate, write_triggered  # noqa: E402
from nightlake.lake.layout import DAQ, SCOPE, Layout  # noqa: E402
from nightlake.lake.xrootd import storage_area  # noqa: E402
from nightlake.night.plan import Plan  # noqa: E402
from nightlake.night.spec import parse_spec  # noqa: E402


def night(site: str, n_files: int, size: int) -> list:
    datasets = max(1, -(-n_files // 1000))
    spec = parse_spec(tomllib.loads(bl.night_spec(site, datasets, -(-n_files // datasets), size,
                                                  '["LST-1", "LST-2", "LST-3", "LST-4"]')))
    return list(Plan(spec).files())[:n_files]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)


def done_times(journal: Path) -> dict[str, float]:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
        return dict(db.execute("SELECT name, updated_at FROM files WHERE state = 'done'"))


def measure_rate(lake: Layout, rate: float, seconds: float, size: int, work: Path) -> dict:
    """One writer at `rate` into a watched directory of its own; the daemon's latency and rate."""
    tag = uuid.uuid4().hex[:6]
    area = storage_area(lake, DAQ, SCOPE)
    watch = area / f"bench-{tag}"
    watch.mkdir(parents=True)
    files = night(f"Bench{tag}", int(rate * seconds), size)
    run = work / f"run-{tag}"
    log = open(work / f"daemon-{tag}.log", "w")
    daemon = subprocess.Popen([str(bl.BIN / "nightlake"), "daemon", str(watch), "--rse", DAQ.name, "--scope", SCOPE,
                               "--run", str(run)], stderr=log, stdout=log)
    try:
        while not (run / "journal.sqlite").exists():
            time.sleep(0.2)
        started = time.time()
        written = write_triggered(files, watch, rate)
        writer_s = time.time() - started
        while len(done := done_times(run / "journal.sqlite")) < len(files):
            assert daemon.poll() is None, f"the daemon exited: {(work / f'daemon-{tag}.log').read_text()[-2000:]}"
            time.sleep(0.5)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=300)
    latencies, first = [], None
    for planned in files:
        path = file_path(watch, planned)
        mtime = path.stat().st_mtime
        first = mtime if first is None else min(first, mtime)
        latencies.append(done[path.relative_to(area).as_posix()] - mtime)
    span = max(done.values()) - first
    return {"rate_asked": rate, "files": len(files), "bytes_each": size, "writer_files_per_s": round(written / writer_s, 1),
            "latency_p50_s": percentile(latencies, 0.5), "latency_p95_s": percentile(latencies, 0.95),
            "latency_max_s": round(max(latencies), 3), "sustained_files_per_s": round(len(files) / span, 1)}


def per_file_baseline(lake: Layout, n_files: int, size: int, work: Path) -> dict:
    """The same kind of files registered one at a time: verify, add_replica, metadata, attach."""
    from rucio.client import Client

    tag = uuid.uuid4().hex[:6]
    area = storage_area(lake, DAQ, SCOPE)
    twin = area / f"baseline-{tag}"
    files = night(f"Base{tag}", n_files, size)
    generate(files, twin)
    client, naming = Client(), Naming()
    started, datasets = time.monotonic(), set()
    for planned in files:
        described = describe(file_path(twin, planned), area, SCOPE, naming)
        record = described.record
        if record.dataset not in datasets:
            client.add_dataset(SCOPE, record.dataset)
            datasets.add(record.dataset)
        client.add_replica(DAQ.name, SCOPE, record.name, record.bytes, record.adler32)
        client.set_metadata_bulk(SCOPE, record.name, record.meta)
        client.attach_dids(SCOPE, record.dataset, [{"scope": SCOPE, "name": record.name}])
    seconds = time.monotonic() - started
    return {"files": n_files, "bytes_each": size, "seconds": round(seconds, 2),
            "files_per_s": round(n_files / seconds, 1), "calls_per_file": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake-dir", type=Path, default=bl.DEFAULT_LAKE)
    parser.add_argument("--rates", default="10,100,1000", help="files/s, comma-separated [10,100,1000]")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of writing per rate [10]")
    parser.add_argument("--size", type=int, default=5760, help="bytes per file, a multiple of 2880 [5760]")
    parser.add_argument("--baseline", type=int, default=300, help="files registered one at a time [300]")
    parser.add_argument("--name", default="daemon")
    args = parser.parse_args()
    bl.use_lake(args.lake_dir)
    lake = Layout.load_or_new(args.lake_dir)
    work = bl.scratch("daemon")
    rates = [float(r) for r in args.rates.split(",")]
    print(f"method: {bl.method(__doc__)}")
    print(f"inputs: rates {rates} files/s for {args.seconds} s each, {args.size} bytes per file; "
          f"per-file baseline on {args.baseline} files; lake {bl.relative(str(args.lake_dir))}")
    result = {"method": bl.method(__doc__), "load_before": bl.loadavg(),
              "rates": [measure_rate(lake, r, args.seconds, args.size, work) for r in rates],
              "per_file": per_file_baseline(lake, args.baseline, args.size, work), "load_after": bl.loadavg()}
    best = max(r["sustained_files_per_s"] for r in result["rates"])
    result["ratio_daemon_to_per_file"] = bl.ratio(best, result["per_file"]["files_per_s"])
    path = bl.write_result(args.name, result)
    for r in result["rates"]:
        print(f"rate {r['rate_asked']:g}/s (writer achieved {r['writer_files_per_s']}/s), {r['files']} files: "
              f"latency p50 {r['latency_p50_s']} s, p95 {r['latency_p95_s']} s, max {r['latency_max_s']} s; "
              f"sustained {r['sustained_files_per_s']} files/s")
    b = result["per_file"]
    print(f"per-file baseline: {b['files']} files in {b['seconds']} s = {b['files_per_s']} files/s "
          f"({b['calls_per_file']} REST calls per file)")
    print(f"ratio daemon (best sustained {best} files/s) / per-file: {result['ratio_daemon_to_per_file']}")
    print(bl.target_line("latency p95 at 100 files/s",
                         next((r["latency_p95_s"] for r in result["rates"] if r["rate_asked"] == 100), None),
                         "<=", 10, " s"))
    print(f"written {bl.relative(str(path))}")
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
