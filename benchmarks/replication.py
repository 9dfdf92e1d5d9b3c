#!/usr/bin/env python3
"""Benchmark: replication ONSITE -> OFFSITE-A through Rucio's conveyor, against gfal2 copying the
same files directly with the transfer service's own copy function, in the same run.

Method: two sets of files (`--small` files of `--small-size`, `--large` files of `--large-size`,
random bytes) are ingested to ONSITE by `nightlake ingest`, one dataset each, without rules. Then,
per set:
  conveyor: one rule to OFFSITE-A (`nightlake rules add`) and `get_replication_rule` polled every
            0.5 s until OK: files/s and MB/s over the time from the rule to OK, and the latency from
            the last upload (the ingest's end) to the rule OK. This is the whole chain: judge,
            conveyor-submitter, the lake's transfer service (gfal2 HTTP-TPC pull), poller, finisher.
  gfal2:    the same files' ONSITE replicas copied by `lake/transfers.copy` (the function the
            service runs per file: same gfal2 options, adler32 checked at both ends) to a scratch
            path on OFFSITE-A, under Debian's python3, as many at once as the service allows on one
            link (`transfer_service.PER_LINK`); deleted afterwards. A failed copy is tried again, up
            to 4 times 10 s apart, as the conveyor retries one; the retries are counted, and so are
            the lake watchdog's restarts of a wedged XRootD during the set (its log).
ratio = conveyor / gfal2 (files/s and MB/s): what Rucio's orchestration costs on top of the copies.
MB = 1e6 bytes; wall-clock seconds.

    .venv/bin/python benchmarks/replication.py [--lake-dir .nightlake/bench-lake] [--small 200 --large 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
from nightlake.lake import transfer_service  # noqa: E402
from nightlake.lake.layout import RSES, Layout  # noqa: E402

POLL_S = 0.5

# Run under /usr/bin/python3 (gfal2's bindings): copy each row with the service's own function.
DIRECT = """
import importlib.util, json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # its sibling transfer_jobs, as when the service runs it
spec = importlib.util.spec_from_file_location("transfers", sys.argv[1])
transfers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfers)
rows, workers = json.load(sys.stdin), int(sys.argv[2])
retried = []
def copy(row):  # up to 5 attempts, 10 s apart, as the conveyor retries a failed transfer
    for attempt in range(5):
        reason = transfers.copy(row, 300)
        if not reason or attempt == 4:
            return reason
        retried.append(reason)
        time.sleep(10)
start = time.monotonic()
with ThreadPoolExecutor(workers) as pool:
    reasons = list(pool.map(copy, rows))
print(json.dumps({"seconds": time.monotonic() - start, "failed": [r for r in reasons if r], "retried": retried}))
"""


def write_set(root: Path, name: str, count: int, size: int) -> tuple[Path, dict[str, str]]:
    """`count` random files of `size` bytes in root/name/ (a dataset); {file name: adler32}."""
    directory = root / name
    directory.mkdir(parents=True)
    sums = {}
    for i in range(count):
        data = os.urandom(size)
        path = directory / f"{name}_{i:05d}.dat"
        path.write_bytes(data)
        sums[path.name] = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    root.chmod(0o755)
    return directory, sums


def nightlake(*args: str) -> None:
    subprocess.run([str(bl.BIN / "nightlake"), *args], check=True, capture_output=True, text=True)


def conveyor(run: Path, dataset: str) -> dict:
    """Rule to OFFSITE-A on the run's dataset, timed until OK."""
    from rucio.client import Client

    client = Client()
    start = time.monotonic()
    nightlake("rules", "add", str(run), "--rule", "OFFSITE-A")
    (rule,) = [r for r in client.list_did_rules("cta", dataset) if r["rse_expression"] == "OFFSITE-A"]
    while (state := client.get_replication_rule(rule["id"]))["state"] != "OK":
        if state["state"] == "STUCK":
            raise SystemExit(f"rule {rule['id']} STUCK: {state['error']}")
        time.sleep(POLL_S)
    return {"rule_id": rule["id"], "seconds": time.monotonic() - start, "ok_at": time.monotonic()}


def direct(lake: Layout, dataset: str, sums: dict[str, str]) -> dict:
    """The dataset's ONSITE replicas copied by the service's copy function to a scratch path on OFFSITE-A."""
    from rucio.client import Client

    target = f"https://127.0.0.1:{lake.https_port(RSES[1])}/rucio/bench-direct/{uuid.uuid4().hex}"
    rows = []
    for replica in Client().list_replicas([{"scope": "cta", "name": dataset}], schemes=["https", "davs"],
                                          rse_expression="ONSITE"):
        (pfn,) = replica["rses"]["ONSITE"]
        rows.append({"source_surl": pfn, "dest_surl": f"{target}/{replica['name']}",
                     "checksum": f"ADLER32:{sums[replica['name']]}",
                     "params": {"verify_checksum": "both", "overwrite": False}})
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "X509_USER_PROXY": str(lake.proxy),
           "X509_CERT_DIR": str(lake.ca_dir)}
    script = Path(transfer_service.__file__).with_name("transfers.py")
    out = subprocess.run([transfer_service.PYTHON, "-c", DIRECT, str(script), str(transfer_service.PER_LINK)],
                         input=json.dumps(rows), capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["failed"]:
        raise SystemExit(f"{len(result['failed'])} direct copies failed, e.g. {result['failed'][0]}")
    for path in (lake.rse_data(RSES[1]) / "rucio" / "bench-direct").glob("*/*"):
        path.unlink()
    return result


def watchdog_restarts(lake: Layout) -> int:
    """How many times the lake's storage watchdog has restarted a wedged XRootD so far (its log)."""
    log = lake.logs / "storage-watchdog.log"
    return log.read_text().count("XRootD restarted") if log.exists() else 0


def measure(lake: Layout, scratch: Path, name: str, count: int, size: int) -> dict:
    """One set: ingested, replicated by the conveyor, copied directly; the figures."""
    tag = f"{name}_{uuid.uuid4().hex[:8]}"
    source, sums = write_set(scratch / tag, tag, count, size)
    run = scratch / f"run-{tag}"
    nightlake("ingest", str(source.parent), "--scope", "cta", "--rse", "ONSITE", "--run", str(run), "--quiet")
    ingested = time.monotonic()
    print(f"{name}: {count} x {size:,} B ingested to ONSITE; rule to OFFSITE-A ...", flush=True)
    by_conveyor = conveyor(run, tag)
    print(f"{name}: conveyor {by_conveyor['seconds']:.1f} s; gfal2 directly ...", flush=True)
    by_gfal2 = direct(lake, tag, sums)
    print(f"{name}: gfal2 {by_gfal2['seconds']:.1f} s, {len(by_gfal2['retried'])} attempt(s) retried", flush=True)
    total = count * size
    figures = {"files": count, "bytes": total,
               "conveyor": {"seconds": round(by_conveyor["seconds"], 2),
                            "files_per_s": round(count / by_conveyor["seconds"], 2),
                            "mb_per_s": round(total / 1e6 / by_conveyor["seconds"], 2),
                            "last_upload_to_rule_ok_s": round(by_conveyor["ok_at"] - ingested, 2)},
               "gfal2": {"seconds": round(by_gfal2["seconds"], 2),
                         "files_per_s": round(count / by_gfal2["seconds"], 2),
                         "mb_per_s": round(total / 1e6 / by_gfal2["seconds"], 2),
                         "attempts_retried": len(by_gfal2["retried"]), "retry_reasons": by_gfal2["retried"][:5]},
               "watchdog_restarts": watchdog_restarts(lake)}
    figures["ratio_conveyor_to_gfal2"] = bl.ratio(figures["conveyor"]["files_per_s"], figures["gfal2"]["files_per_s"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake-dir", type=Path, default=bl.DEFAULT_LAKE)
    parser.add_argument("--small", type=int, default=200, help="small files [200]")
    parser.add_argument("--small-size", type=int, default=100_000, help="bytes each [100000]")
    parser.add_argument("--large", type=int, default=3, help="large files [3]")
    parser.add_argument("--large-size", type=int, default=100_000_000, help="bytes each [1e8]")
    parser.add_argument("--name", default="replication")
    args = parser.parse_args()
    bl.use_lake(args.lake_dir)
    lake = Layout.load_or_new(args.lake_dir)
    print(__doc__.split("\n\n    .venv")[0], flush=True)
    print(f"inputs: small {args.small} x {args.small_size:,} B, large {args.large} x {args.large_size:,} B; "
          f"baseline: gfal2 directly, {transfer_service.PER_LINK} at once; lake {args.lake_dir}", flush=True)
    scratch = bl.scratch("replication")
    result = {"method": bl.method(__doc__), "load_before": bl.loadavg(),
              "small": measure(lake, scratch, "small", args.small, args.small_size),
              "large": measure(lake, scratch, "large", args.large, args.large_size),
              "load_after": bl.loadavg()}
    path = bl.write_result(args.name, result)
    for name in ("small", "large"):
        r = result[name]
        print(f"{name}: {r['files']} files, {r['bytes'] / 1e6:.0f} MB; conveyor {r['conveyor']['files_per_s']} files/s "
              f"{r['conveyor']['mb_per_s']} MB/s (last upload to rule OK {r['conveyor']['last_upload_to_rule_ok_s']} s); "
              f"gfal2 {r['gfal2']['files_per_s']} files/s {r['gfal2']['mb_per_s']} MB/s; "
              f"ratio {r['ratio_conveyor_to_gfal2']}")
    print(f"written {bl.relative(str(path))}")
    subprocess.run(["rm", "-rf", str(scratch)], check=False)


if __name__ == "__main__":
    main()
