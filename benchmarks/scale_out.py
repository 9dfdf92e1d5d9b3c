"""Scale out: the same streamed night ingested with 1, 2 and 4 Dask workers (`--cluster local:N`),
and the coordinator's own ceiling.

Method: for each N, a night spec of `--files` files of `--size` (a site name unique to the run, so
its DIDs are new) is ingested by ONE `nightlake ingest SPEC --rse ONSITE --cluster local:N --quiet
--json` child process against the bench lake: payloads are generated on the workers, put over
`--scheme` (https by default) and verified there; the coordinator journals, registers and sets
metadata in bulk. The child's own CPU (the coordinator, with the LocalCluster's scheduler in it;
its workers are separate processes) is sampled from /proc while it runs, the lake's per component
before and after. Then the coordinator's ceiling, in this process: the real pipeline and journal,
a `local:2` cluster whose workers do no I/O (a storage that stores nothing), and a catalog that
answers at once; its files/s and CPU per file are what one coordinator can drive at most. The
baseline is `local:1`, measured in the same run. Files/s and MB/s are for the whole run, from
the command's start to its end (cluster start included).

From the figures, the workers a 500,000-file / 5.5 TB night needs to finish in 10 hours (13.9
files/s and 153 MB/s), and which part saturates first.

    .venv/bin/python benchmarks/scale_out.py [--files 20000] [--size "64 kB"] [--workers 1,2,4]
        [--scheme https] [--catalog-lanes 1] [--batch 1000] [--lake-dir .nightlake/bench-lake] [--port 33900]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

NIGHT_FILES, NIGHT_BYTES, NIGHT_HOURS = 500_000, 5.5e12, 10


def spec(path: Path, files: int, size: str, site: str) -> Path:
    datasets = max(1, files // 2000)
    path.write_text(bl.night_spec(site, datasets, files // datasets, size, '["LST-1", "LST-2", "MST-1", "MST-2"]'))
    return path


def ingest(spec_path: Path, run: Path, workers: int, port: int, lake_dir: Path, scheme: str, lanes: int,
           batch: int, timeout: float) -> dict:
    """One `nightlake ingest --cluster local:N`, its coordinator's CPU sampled from outside; stopped
    (SIGTERM: it closes its cluster) and recorded as such after `timeout` seconds."""
    argv = [str(bl.BIN / "nightlake"), "ingest", str(spec_path), "--rse", "ONSITE", "--run", str(run),
            "--scheme", scheme, "--catalog-lanes", str(lanes), "--batch", str(batch), "--cluster", f"local:{workers}", "--cluster-port",
            str(port), "--quiet", "--json"]
    lake_before, busy_before = bl.lake_cpu(lake_dir), bl.machine_busy_s()
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = 0.0
    while child.poll() is None:
        cpu = max(cpu, bl._cpu_of(child.pid, reaped=False))
        if time.perf_counter() - started > timeout:
            child.terminate()
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    out, err = child.communicate()
    if child.returncode != 0:
        counts = bl.journal_counts(run / "journal.sqlite")
        return {"workers": workers, "seconds": round(seconds, 2), "failed": child.returncode,
                "journal": counts, "stderr": err.strip()[-500:]}
    summary = json.loads(out)
    per_worker: dict[str, list[float]] = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["kind"] == "worker.batch":
            totals = per_worker.setdefault(event["worker"], [0, 0, 0.0])
            totals[0] += event["files"]
            totals[1] += event["bytes"]
            totals[2] += event["seconds"]
    files, nbytes = summary["files"]["done"], summary["bytes"]["done"]
    return {"workers": workers, "seconds": round(seconds, 2), "files": files, "bytes": nbytes,
            "files_per_s": round(files / seconds, 1), "mb_per_s": round(nbytes / seconds / 1e6, 2),
            "coordinator_cpu_s": round(cpu, 2), "coordinator_cpu_ms_per_file": round(1000 * cpu / files, 3),
            "lake_cpu_s": bl.cpu_delta(lake_before, bl.lake_cpu(lake_dir)),
            "machine_busy_cpu_s": round(bl.machine_busy_s() - busy_before, 1),
            "per_worker": {w: {"files": f, "mb_per_s_busy": round(b / s / 1e6, 2) if s else None}
                           for w, (f, b, s) in sorted(per_worker.items())}}


class NullRemote:
    """What a worker opens instead of the RSE's storage: a storage that stores nothing."""

    rse, patience, pool_size = "NULL", 0.0, 4

    def open(self):
        from catalog_lanes import NoStorage

        return NoStorage()


def no_source(record):
    return lambda: iter([b"x"])


def coordinator_ceiling(files: int, port: int) -> dict:
    """The pipeline on a `local:2` cluster whose workers do no I/O, against a catalog that answers at
    once: what the coordinator (journal, scheduler, stages) sustains, and its CPU per file."""
    from catalog_lanes import NoStorage, Server, SimulatedCatalog
    from nightlake.catalog.retry import RetryPolicy
    from nightlake.flows.cluster import open_cluster, parse_cluster
    from nightlake.flows.ingest.context import IngestOptions
    from nightlake.flows.ingest.pipeline import Ingest
    from nightlake.runs.journal.ingest import FileState, IngestJournal

    with tempfile.TemporaryDirectory() as work, open_cluster(parse_cluster("local:2", port=port)) as cluster:
        journal = IngestJournal.create(Path(work) / "journal.sqlite", {})
        journal.add_files({"scope": "cta", "name": f"f{i:06d}", "dataset": f"ds{i // 2000}", "source": "payload:1",
                           "bytes": 1, "adler32": None, "meta": {"i": i}} for i in range(files))
        journal.add_datasets(sorted({("cta", f"ds{i // 2000}") for i in range(files)}))
        catalog = SimulatedCatalog(Server(64, 0.0, 0.0))
        ingest = Ingest(journal, catalog, NoStorage(),
                        pfn_of=lambda b: {f"{r.scope}:{r.name}": f"root://h//rucio/{r.name}" for r in b},
                        open_source=no_source, options=IngestOptions(rse="NULL"),
                        storage_policy=RetryPolicy(target="NULL"), metadata_catalog=catalog.twin(),
                        cluster=cluster, remote=NullRemote())
        cpu, started = time.process_time(), time.perf_counter()
        ingest.run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert journal.counts()[FileState.DONE] == files
    return {"files": files, "seconds": round(seconds, 2), "files_per_s": round(files / seconds, 1),
            "cpu_ms_per_file": round(1000 * cpu / files, 3)}


def night_table(runs: list[dict], ceiling: dict) -> list[str]:
    """Workers for 500,000 files / 5.5 TB in 10 h, from the per-worker bytes rate measured."""
    need_files, need_mb = NIGHT_FILES / (NIGHT_HOURS * 3600), NIGHT_BYTES / (NIGHT_HOURS * 3600) / 1e6
    runs = [r for r in runs if "failed" not in r]
    if not runs:
        return [f"needed: {need_files:.1f} files/s and {need_mb:.0f} MB/s; no run completed"]
    best = max(runs, key=lambda r: r["mb_per_s"] / r["workers"])
    per_worker_mb = best["mb_per_s"] / best["workers"]
    lines = [f"needed: {need_files:.1f} files/s and {need_mb:.0f} MB/s",
             f"per worker (best, local:{best['workers']}): {per_worker_mb:.1f} MB/s -> "
             f"{math.ceil(need_mb / per_worker_mb)} workers for the bytes",
             f"coordinator ceiling: {ceiling['files_per_s']} files/s (x{ceiling['files_per_s'] / need_files:.0f} "
             f"the night's file rate), {ceiling['cpu_ms_per_file']} ms CPU per file"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--size", default="64 kB")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--scheme", default="https", help="the RSE's protocol the workers put over")
    parser.add_argument("--catalog-lanes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1000, help="files per batch (a worker's task)")
    parser.add_argument("--run-timeout", type=float, default=3600, help="seconds before a run is stopped")
    parser.add_argument("--ceiling-files", type=int, default=20_000)
    parser.add_argument("--lake-dir", type=Path, default=bl.DEFAULT_LAKE)
    parser.add_argument("--port", type=int, default=33900, help="first port of the Dask schedulers")
    parser.add_argument("--name", default="scale_out")
    args = parser.parse_args()
    bl.use_lake(args.lake_dir)
    print(__doc__.split("\n\n")[1])
    print(f"inputs: {args.files} files of {args.size} over {args.scheme}, batches of {args.batch}, "
          f"{args.catalog_lanes} catalog lane(s), workers {args.workers}, load average {bl.loadavg()}")
    runs = []
    with tempfile.TemporaryDirectory(dir=bl.ROOT / ".nightlake") as work:
        stamp = time.strftime("%H%M%S")
        for i, workers in enumerate(int(w) for w in args.workers.split(",")):
            path = spec(Path(work) / f"night-{workers}.toml", args.files, args.size, f"SCALE{stamp}W{workers}")
            runs.append(ingest(path, Path(work) / f"run-{workers}", workers, args.port + i, args.lake_dir,
                               args.scheme, args.catalog_lanes, args.batch, args.run_timeout))
            r = runs[-1]
            if "failed" in r:
                print(f"  local:{workers}: stopped or failed ({r['failed']}) after {r['seconds']} s, journal "
                      f"{r['journal']}: {r['stderr']}")
                continue
            print(f"  local:{workers}: {r['files_per_s']} files/s, {r['mb_per_s']} MB/s "
                  f"(x{r['files_per_s'] / runs[0].get('files_per_s', r['files_per_s']):.2f} vs the first), "
                  f"{r['seconds']} s, "
                  f"coordinator {r['coordinator_cpu_ms_per_file']} ms CPU/file, lake CPU {r['lake_cpu_s']}")
    ceiling = coordinator_ceiling(args.ceiling_files, args.port + 10)
    print(f"  coordinator ceiling (no-I/O workers, instant catalog): {ceiling['files_per_s']} files/s, "
          f"{ceiling['cpu_ms_per_file']} ms CPU per file")
    for line in night_table(runs, ceiling):
        print("  " + line)
    path = bl.write_result(args.name, {"inputs": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                       "coordinator_ceiling": ceiling})
    print(f"written {path.name}")


if __name__ == "__main__":
    main()
