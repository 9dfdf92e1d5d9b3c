#!/usr/bin/env python3
"""Benchmark: the catalog path — many small files into Rucio — three ways, same run, same lake.

Method (N files of `--size` random bytes each, scope `cta`, each method with its own name prefix so
no DID collides, RSE ONSITE; each tool over its fastest protocol on this lake):
  a. stock Rucio: `UploadClient.upload(list)` (tracing off, forced https: its root:// plugin drives the
     xrdcp CLI once per file) of `--baseline-files` of the files into one
     dataset; its files/s is measured on that subset and EXTRAPOLATED to N (said in the output);
  b. nightlake: `nightlake ingest DIR --scope cta --dataset D --rse ONSITE` of all N files (one child
     process, wall time of the process, startup included; no rule; the RSE's preferred write
     protocol, root:// on the local lake);
  c. the server's raw bulk capacity: the N files are first written straight into the RSE's storage
     directory (not timed), then only the catalog is timed: one `add_dids` for the dataset,
     `add_replicas` (1000 per call) and `attach_dids` (1000 per call) — no upload, no metadata.
Rucio REST calls per file for a, b and c are counted from the server's access log, between offsets
taken before and after each method. Ratios: b/a and b/c. Targets: b >= 50x a; b >= 80 % of c;
<= 0.01 REST calls per file for b.

    .venv/bin/python benchmarks/catalog_path.py [--files 2000 --size 1KiB --baseline-files 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

SCOPE, RSE = "cta", "ONSITE"


def parse_bytes(text: str) -> int:
    from nightlake.night.spec import parse_size

    text = text.strip()
    for unit, mult in (("KiB", 1024), ("MiB", 1 << 20), ("GiB", 1 << 30)):
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * mult)
    return parse_size(text)


def make_files(directory: Path, prefix: str, n: int, size: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"{prefix}-{i:06d}.dat"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def method_a(paths: list[Path], dataset: str) -> float:
    """UploadClient.upload of the list into one dataset; seconds."""
    import warnings

    from rucio.client.uploadclient import UploadClient

    # Rucio's WebDAV protocol plugin does not verify the server's certificate; say so once, not per file.
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    uc = UploadClient()
    uc.tracing = False
    # https: the stock client's fastest path here (its root:// plugin drives the xrdcp CLI per file).
    items = [{"path": str(p), "rse": RSE, "did_scope": SCOPE, "did_name": p.name, "force_scheme": "https",
              "dataset_scope": SCOPE, "dataset_name": dataset} for p in paths]
    started = time.perf_counter()
    uc.upload(items)
    return time.perf_counter() - started


def method_b(directory: Path, dataset: str, run: Path, env: dict, workers: int) -> tuple[float, dict]:
    cmd = [str(bl.BIN / "nightlake"), "ingest", str(directory), "--scope", SCOPE, "--dataset", dataset,
           "--rse", RSE, "--run", str(run), "--workers", str(workers), "--quiet", "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return elapsed, {"command": cmd, "exit_code": proc.returncode, "summary_files": summary.get("files")}


def place_on_storage(lake_dir: Path, paths: list[Path]) -> list[dict]:
    """Copy files into ONSITE's storage directory at Rucio's deterministic PFN path (not timed)."""
    from rucio.rse import rsemanager

    info = rsemanager.get_rse_info(RSE)
    proto = next(p for p in info["protocols"] if p["scheme"] == "root")
    pfns = rsemanager.lfns2pfns(info, [{"scope": SCOPE, "name": p.name} for p in paths], operation="write",
                                scheme="root")
    localroot = lake_dir / "storage" / RSE
    owner = localroot.stat()
    files = []
    for path in paths:
        pfn = pfns[f"{SCOPE}:{path.name}"]
        rel = pfn.split(f":{proto['port']}", 1)[1].lstrip("/")
        dest = localroot / rel
        # Directories and files must belong to the XRootD server's user, as if it had written them;
        # a root-owned hash directory would make the server refuse later uploads into it (403).
        for parent in reversed(dest.relative_to(localroot).parents):
            d = localroot / parent
            if not d.exists():
                d.mkdir()
                os.chown(d, owner.st_uid, owner.st_gid)
        shutil.copyfile(path, dest)
        os.chown(dest, owner.st_uid, owner.st_gid)
        data = path.read_bytes()
        files.append({"scope": SCOPE, "name": path.name, "bytes": len(data),
                      "adler32": f"{zlib.adler32(data) & 0xffffffff:08x}"})
    return files


def method_c(files: list[dict], dataset: str) -> float:
    """add_dids(dataset) + add_replicas (1000/call) + attach_dids (1000/call); seconds."""
    from rucio.client import Client

    client = Client()
    started = time.perf_counter()
    client.add_dids([{"scope": SCOPE, "name": dataset, "type": "DATASET"}])
    for i in range(0, len(files), 1000):
        client.add_replicas(rse=RSE, files=files[i:i + 1000])
    for i in range(0, len(files), 1000):
        client.attach_dids(SCOPE, dataset, [{"scope": f["scope"], "name": f["name"]} for f in files[i:i + 1000]])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", default="1KiB")
    parser.add_argument("--baseline-files", type=int, default=300, help="files for method a (extrapolated)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--lake-dir", type=Path, default=bl.DEFAULT_LAKE)
    parser.add_argument("--work", type=Path, default=bl.ROOT / ".nightlake" / "bench-catalog")
    parser.add_argument("--name", default="catalog_path", help="results/<name>.json")
    args = parser.parse_args()

    env = bl.use_lake(args.lake_dir)
    size, n, n_a = parse_bytes(args.size), args.files, min(args.baseline_files, args.files)
    tag = time.strftime("%m%d%H%M%S")
    work = args.work / tag
    print(f"catalog path: N={n} files x {size} B, scope {SCOPE}, RSE {RSE}; run tag {tag}")
    files_a = make_files(work / "a", f"cata-{tag}", n_a, size)
    make_files(work / "b", f"catb-{tag}", n, size)  # ingested as a directory by method b
    files_c = make_files(work / "c", f"catc-{tag}", n, size)
    result: dict = {"method": __doc__.split("\n\n")[1], "files": n, "bytes_per_file": size,
                    "baseline_files": n_a, "server_version": bl.server_version()}

    runs = {}
    for key, label in (("a", f"a. UploadClient.upload(list of {n_a})"),
                       ("b", f"b. nightlake ingest DIR ({n} files)"),
                       ("c", f"c. add_replicas+attach, files pre-placed ({n} files)")):
        print(f"{label} ...", flush=True)
        if key == "c":
            prepared = place_on_storage(args.lake_dir, files_c)
        off, cpu0, busy0 = bl.log_offset(args.lake_dir), bl.lake_cpu(args.lake_dir), bl.machine_busy_s()
        extra: dict = {}
        if key == "a":
            secs, count = method_a(files_a, f"cata-{tag}"), n_a
        elif key == "b":
            secs, extra = method_b(work / "b", f"catb-{tag}", work / "run-b", env, args.workers)
            count = n
        else:
            secs, count = method_c(prepared, f"catc-{tag}"), n
        busy = bl.machine_busy_s() - busy0
        cpu = bl.cpu_delta(cpu0, bl.lake_cpu(args.lake_dir))
        calls = bl.rest_calls(args.lake_dir, off)
        runs[key] = {"label": label, "files": count, "seconds": round(secs, 2),
                     "files_per_s": round(count / secs, 1), "rest_calls": calls["total"],
                     "rest_calls_per_file": round(calls["total"] / count, 4),
                     "rest_calls_by_endpoint": calls["by_endpoint"],
                     "server_cpu_s": {k: v for k, v in cpu.items() if v},
                     "machine_busy_cpu_s": round(busy, 1), "machine_cpu_s_available": round(secs * bl.machine()["nproc"], 1),
                     **extra}
        print(f"   {runs[key]['seconds']} s, {runs[key]['files_per_s']} files/s, "
              f"{calls['total']} REST calls = {runs[key]['rest_calls_per_file']}/file; lake CPU "
              f"{sum(cpu.values()):.1f} s; machine busy {busy:.1f} of {secs * bl.machine()['nproc']:.1f} CPU s", flush=True)
    runs["a"]["extrapolated_seconds_for_N"] = round(n / runs["a"]["files_per_s"], 1)
    result["runs"] = runs
    b_a = bl.ratio(runs["b"]["files_per_s"], runs["a"]["files_per_s"])
    b_c = bl.ratio(runs["b"]["files_per_s"], runs["c"]["files_per_s"])
    result["ratios"] = {"b_over_a": b_a, "b_over_c": b_c}
    result["targets"] = {"b_over_a_ge": 50, "b_over_c_ge": 0.8, "rest_calls_per_file_b_le": 0.01}
    path = bl.write_result(args.name, result)
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nmethod a ran on {n_a} files; for {n} files it would take ~{runs['a']['extrapolated_seconds_for_N']} s "
          "(extrapolated at its measured rate)")
    print(f"{'method':55s} {'files/s':>9s} {'REST/file':>10s}")
    for r in runs.values():
        print(f"{r['label']:55s} {r['files_per_s']:9.1f} {r['rest_calls_per_file']:10.4f}")
    print(f"ratios: b/a = {b_a}, b/c = {b_c}")
    print("targets:")
    print(bl.target_line("b/a", b_a, ">=", 50, "x"))
    print(bl.target_line("b/c", b_c, ">=", 0.8))
    print(bl.target_line("REST calls per file (b)", runs["b"]["rest_calls_per_file"], "<=", 0.01))
    print(f"REST calls per file (a): {runs['a']['rest_calls_per_file']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
