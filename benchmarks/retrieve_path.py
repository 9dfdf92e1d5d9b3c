#!/usr/bin/env python3
"""Benchmark: the retrieve path — a dataset back from the lake — nightlake against Rucio's stock
`DownloadClient` and against raw parallel GETs, same run, same lake, same DIDs.

Method: two datasets are ingested first (not timed) with `nightlake ingest DIR` into ONSITE:
(a) `--files` small files of `--size` random bytes and (b) `--large` files of `--large-size` (a
repeated random 8 MiB block). Then, for each dataset, `--repeat` rounds, each method right after the
other (the output directory emptied before each):
  nightlake: `nightlake retrieve SCOPE:DATASET --out OUT --run RUN --workers W --quiet` in a child
      process, as a user runs it: its wall time includes the process start and the selection
      (`list_replicas`, journal). Process start alone (the interpreter and the imports a retrieve
      needs, best of 3) is measured apart and also subtracted, to show both;
  raw: the same PFNs (resolved before the clock starts with one `list_replicas` and nightlake's own
      replica choice, so the same protocol) fetched by a pool of W threads: one pooled keep-alive
      `requests.Session` (https) or the XRootD client (root://), streamed to disk with zlib adler32
      on the way and compared with the catalog's adler32 — the same end-to-end check, nothing more;
  DownloadClient: `rucio.client.downloadclient.DownloadClient().download_dids` of a dataset holding
      the first `--baseline-files` of the same files (num_threads=W, its own adler32 check), in this
      process; measured on that subset and EXTRAPOLATED to the whole dataset (said in the output).
files/s and MB/s = files or bytes / wall seconds (1 MB = 1e6 B), best of the rounds. Ratios:
nightlake / DownloadClient and nightlake / raw. Targets: small files >= 20x DownloadClient and
>= 0.8 of raw; large files >= 0.9 of raw.

    .venv/bin/python benchmarks/retrieve_path.py [--files 2000 --size 4kB --large 3 --large-size 1GB]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

SCOPE, RSE = "cta", "ONSITE"
BLOCK = 8 << 20
START_IMPORTS = "import nightlake.cli, nightlake.cli.retrieve, nightlake.flows.retrieve.run, nightlake.storage.https"


def make_files(directory: Path, prefix: str, n: int, size: int) -> None:
    """n files of `size` bytes: random up to 8 MiB, a repeated random block beyond (nothing compresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, BLOCK))
    for i in range(n):
        with open(directory / f"{prefix}-{i:06d}.dat", "wb") as f:
            left = size
            while left:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))
        block = os.urandom(len(block)) if size <= BLOCK else block


def run_cli(cmd: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exit {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return elapsed


def ingest(directory: Path, dataset: str, run: Path, env: dict) -> None:
    run_cli([str(bl.BIN / "nightlake"), "ingest", str(directory), "--scope", SCOPE, "--dataset", dataset,
             "--rse", RSE, "--run", str(run), "--quiet"], env)


def subset_dataset(dataset: str, subset: str, count: int) -> None:
    """A second dataset holding the first `count` files of `dataset` (for the DownloadClient)."""
    from rucio.client import Client

    client = Client()
    files = sorted(client.list_files(SCOPE, dataset), key=lambda f: f["name"])[:count]
    client.add_dataset(SCOPE, subset)
    client.attach_dids(SCOPE, subset, [{"scope": f["scope"], "name": f["name"]} for f in files])


def resolve(dataset: str) -> list[dict]:
    """[{pfn, bytes, adler32}] as nightlake's selection would choose them (not timed)."""
    from rucio.client import Client

    from nightlake.catalog.client import Catalog
    from nightlake.flows.retrieve.replicas import SCHEMES, ReadPriorities, choose_replica

    client, priorities = Client(), ReadPriorities(Catalog())
    dids = [{"scope": f["scope"], "name": f["name"]} for f in client.list_files(SCOPE, dataset)]
    out = []
    for i in range(0, len(dids), 1000):
        for replica in client.list_replicas(dids[i:i + 1000], schemes=list(SCHEMES), sort="random"):
            out.append({"pfn": choose_replica(replica, None, priorities)[1], "bytes": replica["bytes"],
                        "adler32": replica["adler32"], "name": replica["name"]})
    return out


def raw_https_getter(workers: int):
    import requests
    from requests.adapters import HTTPAdapter

    from nightlake.storage.credentials import from_rucio_config

    session = requests.Session()
    session.trust_env = False  # as nightlake: REQUESTS_CA_BUNDLE would override `verify`
    creds = from_rucio_config()
    session.verify, session.cert = creds.ca_cert, creds.client_cert
    session.mount("https://", HTTPAdapter(pool_maxsize=workers))

    def get(pfn: str, dest: Path) -> str:
        value = 1
        with session.get(pfn, stream=True, timeout=120) as response, open(dest, "wb") as f:
            response.raise_for_status()
            for chunk in response.iter_content(BLOCK):
                value = zlib.adler32(chunk, value)
                f.write(chunk)
        return f"{value & 0xFFFFFFFF:08x}"
    return get


def raw_root_get(pfn: str, dest: Path) -> str:
    from XRootD import client
    from XRootD.client.flags import OpenFlags

    f, value, offset = client.File(), 1, 0
    status, _ = f.open(pfn, OpenFlags.READ)
    if not status.ok:
        raise RuntimeError(status.message)
    with open(dest, "wb") as out:
        while True:
            status, data = f.read(offset, BLOCK)
            if not status.ok:
                raise RuntimeError(status.message)
            if not data:
                break
            value = zlib.adler32(data, value)
            out.write(data)
            offset += len(data)
    f.close()
    return f"{value & 0xFFFFFFFF:08x}"


def method_raw(files: list[dict], out: Path, workers: int) -> float:
    """Parallel GETs of the resolved PFNs with the catalog's adler32 checked; seconds."""
    https = raw_https_getter(workers)

    def one(item: dict) -> None:
        dest = out / item["name"]
        got = (raw_root_get if item["pfn"].startswith("root:") else https)(item["pfn"], dest)
        if got != item["adler32"]:
            raise RuntimeError(f"{item['name']}: adler32 {got}, catalog {item['adler32']}")

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - started


def method_nightlake(dataset: str, out: Path, run: Path, workers: int, env: dict) -> float:
    return run_cli([str(bl.BIN / "nightlake"), "retrieve", f"{SCOPE}:{dataset}", "--out", str(out), "--run",
                    str(run), "--workers", str(workers), "--quiet"], env)


def method_download_client(dataset: str, out: Path, workers: int) -> float:
    import logging
    import warnings

    from rucio.client.downloadclient import DownloadClient

    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    logger = logging.getLogger("dc-bench")
    logger.setLevel(logging.WARNING)
    client = DownloadClient(logger=logger)
    started = time.perf_counter()
    client.download_dids([{"did": f"{SCOPE}:{dataset}", "base_dir": str(out), "rse": RSE}], num_threads=workers)
    return time.perf_counter() - started


def process_start(env: dict) -> float:
    """The interpreter and the imports a retrieve needs, best of 3: the part of nightlake's wall
    time a long retrieve amortises."""
    return min(run_cli([sys.executable, "-c", START_IMPORTS], env) for _ in range(3))


def measure(kind: str, dataset: str, subset: str, files: list[dict], args, env: dict, work: Path) -> dict:
    """`--repeat` rounds of raw, nightlake and DownloadClient, one after the other."""
    n, total = len(files), sum(f["bytes"] for f in files)
    n_dc = min(args.baseline_files, n)
    times: dict[str, list[float]] = {"raw": [], "nightlake": [], "download_client": []}
    for r in range(args.repeat):
        for method in times:
            out = work / f"out-{kind}"
            shutil.rmtree(out, ignore_errors=True)
            if method == "raw":
                secs = method_raw(files, out, args.workers)
            elif method == "nightlake":
                secs = method_nightlake(dataset, out, work / f"run-{kind}-{r}", args.workers, env)
            else:
                secs = method_download_client(subset, out, args.workers)
            times[method].append(secs)
            count = n_dc if method == "download_client" else n
            print(f"  {kind} round {r} {method:16s} {secs:8.2f} s  {count / secs:8.1f} files/s", flush=True)
        shutil.rmtree(work / f"out-{kind}", ignore_errors=True)
    best = {m: min(t) for m, t in times.items()}
    dc_bytes = sum(f["bytes"] for f in sorted(files, key=lambda f: f["name"])[:n_dc])
    rate = {"raw": n / best["raw"], "nightlake": n / best["nightlake"],
            "nightlake_without_start": n / (best["nightlake"] - args.start_s),
            "download_client": n_dc / best["download_client"]}
    mb_s = {"raw": total / best["raw"] / 1e6, "nightlake": total / best["nightlake"] / 1e6,
            "nightlake_without_start": total / (best["nightlake"] - args.start_s) / 1e6,
            "download_client": dc_bytes / best["download_client"] / 1e6}
    return {"files": n, "bytes": total, "download_client_files": n_dc,
            "schemes": sorted({f["pfn"].split(":", 1)[0] for f in files}),
            "seconds": {m: [round(x, 3) for x in t] for m, t in times.items()},
            "best_files_per_s": {m: round(v, 1) for m, v in rate.items()},
            "best_mb_s": {m: round(v, 1) for m, v in mb_s.items()},
            "download_client_extrapolated_seconds": round(n / rate["download_client"], 1),
            "ratios": {"nightlake_over_download_client": bl.ratio(rate["nightlake"], rate["download_client"]),
                       "nightlake_over_raw": bl.ratio(rate["nightlake"], rate["raw"]),
                       "without_start_over_download_client": bl.ratio(rate["nightlake_without_start"],
                                                                       rate["download_client"]),
                       "without_start_over_raw": bl.ratio(rate["nightlake_without_start"], rate["raw"])}}


def prepare(kind: str, count: int, size: int, tag: str, args, env: dict, work: Path) -> tuple[str, str, list[dict]]:
    """Files on disk → ingested dataset → subset dataset → resolved PFNs (none of it timed)."""
    dataset, subset = f"rp{kind[0]}-{tag}", f"rp{kind[0]}-{tag}-sub"
    make_files(work / f"src-{kind}", dataset, count, size)
    ingest(work / f"src-{kind}", dataset, work / f"ingest-{kind}", env)
    shutil.rmtree(work / f"src-{kind}")
    subset_dataset(dataset, subset, args.baseline_files)
    return dataset, subset, resolve(dataset)


def report(rows: dict, path: Path) -> None:
    print(f"\n{'dataset':>8s} {'files':>6s} {'raw':>9s} {'nightlake':>10s} {'nl-start':>9s} {'DownloadClient':>15s}"
          f" {'nl/DC':>7s} {'nl/raw':>7s} {'(-start)/raw':>12s}   (files/s, best)")
    for kind, r in rows.items():
        b, q = r["best_files_per_s"], r["ratios"]
        print(f"{kind:>8s} {r['files']:6d} {b['raw']:9.1f} {b['nightlake']:10.1f} {b['nightlake_without_start']:9.1f} "
              f"{b['download_client']:15.1f} {q['nightlake_over_download_client']:7.1f} {q['nightlake_over_raw']:7.2f} "
              f"{q['without_start_over_raw']:12.2f}")
        m = r["best_mb_s"]
        print(f"{'':>8s} {'MB/s':>6s} {m['raw']:9.1f} {m['nightlake']:10.1f} {m['nightlake_without_start']:9.1f} "
              f"{m['download_client']:15.1f}")
    for kind, r in rows.items():
        if r["download_client_files"] < r["files"]:
            print(f"DownloadClient ran on {r['download_client_files']} of the {r['files']} {kind} files; for all "
                  f"it would take ~{r['download_client_extrapolated_seconds']} s (extrapolated at its measured rate)")
    print("targets (process start included):")
    if "small" in rows:
        q = rows["small"]["ratios"]
        print(bl.target_line("small: nightlake / DownloadClient", q["nightlake_over_download_client"], ">=", 20, "x"))
        print(bl.target_line("small: nightlake / raw", q["nightlake_over_raw"], ">=", 0.8))
    if "large" in rows:
        print(bl.target_line("large: nightlake / raw", rows["large"]["ratios"]["nightlake_over_raw"], ">=", 0.9))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="small files (0: skip)")
    parser.add_argument("--size", default="4kB")
    parser.add_argument("--large", type=int, default=3, help="large files (0: skip)")
    parser.add_argument("--large-size", default="1GB")
    parser.add_argument("--baseline-files", type=int, default=300, help="files for DownloadClient (extrapolated)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--lake-dir", type=Path, default=bl.DEFAULT_LAKE)
    parser.add_argument("--work", type=Path, default=bl.ROOT / ".nightlake" / "bench-retrieve")
    parser.add_argument("--name", default="retrieve_path", help="results/<name>.json")
    args = parser.parse_args()

    env = bl.use_lake(args.lake_dir)
    from nightlake.night.spec import parse_size

    tag = time.strftime("%m%d%H%M%S")
    work = args.work / tag
    args.start_s = process_start(env)
    kinds = {k: v for k, v in (("small", (args.files, parse_size(args.size))),
                               ("large", (args.large, parse_size(args.large_size)))) if v[0]}
    print(f"retrieve path: {', '.join(f'{k} {n} x {s} B' for k, (n, s) in kinds.items())}; RSE {RSE}, "
          f"{args.workers} workers, repeat {args.repeat}; nightlake process start {args.start_s:.2f} s; tag {tag}")
    result: dict = {"method": __doc__.split("\n\n")[1], "workers": args.workers, "repeat": args.repeat,
                    "process_start_s": round(args.start_s, 3), "server_version": bl.server_version(),
                    "targets": {"small_over_download_client_ge": 20, "small_over_raw_ge": 0.8,
                                "large_over_raw_ge": 0.9}}
    rows = {}
    try:
        for kind, (count, size) in kinds.items():
            dataset, subset, files = prepare(kind, count, size, tag, args, env, work)
            print(f"{kind}: {dataset} ingested, {len(files)} files over {files[0]['pfn'].split(':')[0]}", flush=True)
            busy0 = bl.machine_busy_s()
            rows[kind] = measure(kind, dataset, subset, files, args, env, work)
            rows[kind]["machine_busy_cpu_s"] = round(bl.machine_busy_s() - busy0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["datasets"] = rows
    report(rows, bl.write_result(args.name, result))


if __name__ == "__main__":
    main()
