#!/usr/bin/env python3
"""Benchmark: the bytes path — large files to one RSE — nightlake's storage layer against curl and xrdcp.

Method: for each size in `--sizes` one local source file is written (a repeated 8 MiB random block;
neither protocol compresses) and read once so every method reads it from the page cache. Then, `--repeat`
times, alternating, each file is uploaded to ONSITE (same https and root:// endpoints, same PFN that
Rucio's lfn2pfn gives) by:
  https: `curl -sS --fail -T FILE --cacert CA --cert PROXY` (the baseline) and
         `nightlake.storage.open_storage(https protocol).put(pfn, path, size=...)`;
  root:  `xrdcp -f -s FILE root://...` (the baseline) and `open_storage(root protocol).put(...)`.
nightlake is measured through its storage layer (not a full ingest), i.e. its complete verified put:
stream to `<pfn>.nightlake-part` computing adler32 on the way, ask the storage for its adler32, check
the final name, rename. curl and xrdcp only copy bytes (no checksum). A second https baseline,
`curl_verified`, does what it takes to give curl the same guarantee, one step after the other: the
local file's adler32 (zlib, in this process), `curl -T`, then `curl -I -H 'Want-Digest: adler32'` and
a comparison; nightlake_https / curl_verified is printed beside the target ratio. The object is deleted after every
upload, so the disk holds at most one copy per size. MB/s = bytes / wall seconds (1 MB = 1e6 B);
the best of the repeats is used for the ratio. Target: nightlake >= 90 % of curl (https). The
nightlake https put is also timed step by step (the PUT, the storage's adler32 of the part) to show
what the verification costs: the ratio without the storage's adler32 is printed beside the target.

    .venv/bin/python benchmarks/bytes_path.py [--sizes 1MB,100MB,1GB,2GB --repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

SCOPE, RSE = "cta", "ONSITE"
BLOCK = 8 << 20


def make_source(path: Path, size: int) -> None:
    block = os.urandom(min(BLOCK, size))
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    with open(path, "rb") as f:  # warm the page cache
        while f.read(BLOCK):
            pass


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_cli(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def curl_verified(src: Path, pfn: str, tls: list[str]) -> None:
    """curl with nightlake's guarantee: the local adler32, the upload, the storage's adler32, compared."""
    from nightlake.storage.adler import file_adler32

    local = file_adler32(src)[1]
    run_cli(["curl", "-sS", "--fail", "-T", str(src), *tls, "-o", "/dev/null", pfn])
    head = run_cli(["curl", "-sS", "--fail", "-I", "-H", "Want-Digest: adler32", *tls, pfn])
    digest = next((line.split("=", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("digest:")),
                  None)
    if digest != local:
        raise RuntimeError(f"curl_verified: storage adler32 {digest}, local {local}")


def time_steps(storage, steps: dict[str, list[float]]) -> None:
    """Wrap the storage's two costly put steps to record their seconds: `_send` (the PUT with the
    local adler32 computed on the way) and `_checksum` (the storage's adler32 of the part, which
    XRootD computes by reading the part again). The rest (final-name check, rename) is the
    difference."""
    for step in ("_send", "_checksum"):
        original = getattr(storage, step)

        def timed_step(*args, original=original, step=step, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                steps[step].append(time.perf_counter() - started)
        setattr(storage, step, timed_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1MB,100MB,1GB,2GB")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--lake-dir", type=Path, default=bl.DEFAULT_LAKE)
    parser.add_argument("--work", type=Path, default=bl.ROOT / ".nightlake" / "bench-bytes")
    parser.add_argument("--name", default="bytes_path", help="results/<name>.json")
    args = parser.parse_args()

    bl.use_lake(args.lake_dir)
    from rucio.rse import rsemanager

    from nightlake.night.spec import parse_size
    from nightlake.storage import open_storage
    from nightlake.storage.credentials import from_rucio_config

    creds = from_rucio_config()
    ca, proxy = creds.ca_cert, creds.client_cert
    info = rsemanager.get_rse_info(RSE)
    protos = {p["scheme"]: p for p in info["protocols"]}
    storages = {s: open_storage(protos[s], ca_cert=ca, client_cert=proxy, pool_size=2) for s in ("https", "root")}
    steps: dict[str, list[float]] = {"_send": [], "_checksum": []}
    time_steps(storages["https"], steps)
    sizes = [parse_size(s.strip()) for s in args.sizes.split(",")]
    tag = time.strftime("%m%d%H%M%S")
    work = args.work / tag
    work.mkdir(parents=True, exist_ok=True)
    print(f"bytes path: sizes {args.sizes}, repeat {args.repeat}, RSE {RSE}; nightlake via storage.put "
          f"(verified two-phase put), baselines curl -T (https) and xrdcp (root)")

    rows = []
    try:
        for size in sizes:
            src = work / f"src-{size}"
            make_source(src, size)
            times: dict[str, list[float]] = {"curl": [], "curl_verified": [], "nightlake_https": [], "xrdcp": [],
                                             "nightlake_root": []}
            for step in steps.values():
                step.clear()
            for r in range(args.repeat):
                for method in times:
                    scheme = "https" if method in ("curl", "curl_verified", "nightlake_https") else "root"
                    name = f"bytes-{tag}-{size}-{method}-{r}"
                    pfn = rsemanager.lfns2pfns(info, [{"scope": SCOPE, "name": name}], operation="write",
                                               scheme=scheme)[f"{SCOPE}:{name}"]
                    if method == "curl":
                        cmd = ["curl", "-sS", "--fail", "-T", str(src), "--cacert", str(ca), "--cert", str(proxy),
                               "-o", "/dev/null", pfn]
                        secs = timed(lambda: run_cli(cmd))
                    elif method == "curl_verified":
                        tls = ["--cacert", str(ca), "--cert", str(proxy)]
                        secs = timed(lambda: curl_verified(src, pfn, tls))
                    elif method == "xrdcp":
                        cmd = ["xrdcp", "-f", "-s", str(src), pfn]
                        secs = timed(lambda: run_cli(cmd))
                    else:
                        storage = storages[scheme]
                        secs = timed(lambda: storage.put(pfn, src, size=size))
                    storages[scheme].delete(pfn)
                    times[method].append(secs)
                    split = (f"  (PUT {steps['_send'][-1]:.2f} s, storage adler32 {steps['_checksum'][-1]:.2f} s)"
                             if method == "nightlake_https" else "")
                    print(f"  {size / 1e6:8.0f} MB {method:16s} {secs:7.2f} s {size / secs / 1e6:8.1f} MB/s{split}",
                          flush=True)
            src.unlink()
            best = {m: size / min(t) / 1e6 for m, t in times.items()}
            best_put = times["nightlake_https"].index(min(times["nightlake_https"]))
            put_only = size / (min(times["nightlake_https"]) - steps["_checksum"][best_put]) / 1e6
            rows.append({"bytes": size, "seconds": {m: [round(x, 3) for x in t] for m, t in times.items()},
                         "nightlake_https_steps_s": {k.lstrip("_"): [round(x, 3) for x in v] for k, v in steps.items()},
                         "nightlake_https_without_storage_adler32_mb_s": round(put_only, 1),
                         "https_without_storage_adler32_ratio": bl.ratio(put_only, best["curl"]),
                         "best_mb_s": {m: round(v, 1) for m, v in best.items()},
                         "https_ratio": bl.ratio(best["nightlake_https"], best["curl"]),
                         "https_verified_ratio": bl.ratio(best["nightlake_https"], best["curl_verified"]),
                         "root_ratio": bl.ratio(best["nightlake_root"], best["xrdcp"])})
    finally:
        for s in storages.values():
            s.close()
        shutil.rmtree(work, ignore_errors=True)

    total = sum(r["bytes"] for r in rows)
    agg = {m: round(total / sum(min(r["seconds"][m]) for r in rows) / 1e6, 1)
           for m in ("curl", "curl_verified", "nightlake_https", "xrdcp", "nightlake_root")}
    result = {"method": __doc__.split("\n\n")[1], "sizes": sizes, "repeat": args.repeat,
              "nightlake_measured_through": "nightlake.storage.open_storage(...).put (verified two-phase put)",
              "rows": rows, "aggregate_best_mb_s": agg,
              "aggregate_https_without_storage_adler32_mb_s": round(
                  total / sum(r["bytes"] / r["nightlake_https_without_storage_adler32_mb_s"] for r in rows), 1),
              "aggregate_ratios": {"https": bl.ratio(agg["nightlake_https"], agg["curl"]),
                                   "https_verified": bl.ratio(agg["nightlake_https"], agg["curl_verified"]),
                                   "root": bl.ratio(agg["nightlake_root"], agg["xrdcp"])},
              "targets": {"https_ratio_ge": 0.9}}
    path = bl.write_result(args.name, result)
    print(f"\n{'size':>10s} {'curl':>8s} {'curl+v':>8s} {'nl https':>9s} {'ratio':>6s} {'ratio v':>7s} "
          f"{'xrdcp':>8s} {'nl root':>8s} {'ratio':>6s}  (MB/s, best; v = against curl_verified)")
    for r in rows:
        b = r["best_mb_s"]
        print(f"{r['bytes'] / 1e6:8.0f}MB {b['curl']:8.1f} {b['curl_verified']:8.1f} {b['nightlake_https']:9.1f} "
              f"{r['https_ratio']:6.2f} {r['https_verified_ratio']:7.2f} "
              f"{b['xrdcp']:8.1f} {b['nightlake_root']:8.1f} {r['root_ratio']:6.2f}")
    ratios = result["aggregate_ratios"]
    print(f"{'all':>10s} {agg['curl']:8.1f} {agg['curl_verified']:8.1f} {agg['nightlake_https']:9.1f} "
          f"{ratios['https']:6.2f} {ratios['https_verified']:7.2f} "
          f"{agg['xrdcp']:8.1f} {agg['nightlake_root']:8.1f} {ratios['root']:6.2f}")
    print("targets:")
    print(bl.target_line("nightlake https / curl (all sizes)", result["aggregate_ratios"]["https"], ">=", 0.9))
    print(f"nightlake https / curl_verified (all sizes): {ratios['https_verified']}")
    bare = result["aggregate_https_without_storage_adler32_mb_s"]
    print(f"nightlake https without the storage's adler32 (PUT, final-name check, rename) / curl (all sizes): "
          f"{bl.ratio(bare, agg['curl'])} ({bare} MB/s): what the storage's re-read costs")
    print(f"nightlake root / xrdcp (all sizes): {ratios['root']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
