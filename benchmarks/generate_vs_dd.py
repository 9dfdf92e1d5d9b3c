#!/usr/bin/env python3
"""Benchmark: `nightlake generate` write speed for large files against `dd` on the same disk.

Method: the same number of files of the same size are written (a) by `dd if=/dev/zero bs=8M`, one
dd per file, one after the other, in two modes: through the page cache with `conv=fsync`, and with
`oflag=direct` (which bypasses the cache, often the faster on VMs); (b) by nightlake's generator
(FITS header, PCG64 payload, DATASUM, write, fsync, rename) with its default thread pool. Each method
runs `--repeat` times, alternating, into a fresh directory. The baseline is the best dd run of either
mode (the disk's sequential write speed); the ratio is the best generator run over it.
The requirement is ratio >= 0.8.

    .venv/bin/python benchmarks/generate_vs_dd.py --out /path/on/target/disk [--files 8 --size "1 GB"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nightlake.flows.generate import generate
from nightlake.night.plan import Plan, summarize
from nightlake.night.spec import parse_size, parse_spec

DD_BLOCK = 8 << 20


def night(files: int, size: int) -> Plan:
    return Plan(parse_spec({
        "night": {"site": "BENCH", "date": "2026-01-01", "seed": 1, "telescopes": ["LST-1"]},
        "datasets": {"count": 1, "files": files},
        "sizes": {"kind": "fixed", "size": size},
    }))


def run_dd(out: Path, files: int, size: int, flag: str) -> float:
    out.mkdir(parents=True)
    started = time.perf_counter()
    for i in range(files):
        subprocess.run(["dd", "if=/dev/zero", f"of={out / f'dd{i}.bin'}", f"bs={DD_BLOCK}",
                        f"count={-(-size // DD_BLOCK)}", flag, "status=none"], check=True)
    return time.perf_counter() - started


def run_generate(out: Path, plan: Plan, workers: int | None) -> float:
    started = time.perf_counter()
    generate(plan.files(), out, workers=workers)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory on the disk to measure")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", default="1 GB", help="bytes per file, e.g. '1 GB'")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", type=Path, default=Path(".nightlake/benchmarks/generate_vs_dd.json"))
    args = parser.parse_args()

    size = parse_size(args.size)
    plan = night(args.files, size)
    total = summarize(plan).n_bytes  # FITS-rounded; dd writes whole 8 MiB blocks, counted exactly
    dd_bytes = args.files * -(-size // DD_BLOCK) * DD_BLOCK
    root = Path(tempfile.mkdtemp(prefix="nightlake-bench-", dir=args.out))
    dd_rates: dict[str, list[float]] = {"conv=fsync": [], "oflag=direct": []}
    gen_rates = []
    try:
        for r in range(args.repeat):
            for flag, rates in dd_rates.items():
                rates.append(dd_bytes / run_dd(root / f"dd{r}", args.files, size, flag) / 1e6)
                shutil.rmtree(root / f"dd{r}")
            gen_rates.append(total / run_generate(root / f"gen{r}", plan, args.workers) / 1e6)
            shutil.rmtree(root / f"gen{r}")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    baseline = max(max(rates) for rates in dd_rates.values())
    result = {
        "method": "best of N alternating runs; dd if=/dev/zero bs=8M per file (conv=fsync and "
                  "oflag=direct; best of both is the baseline) vs nightlake generate "
                  "(threads, write+fsync+rename per file)",
        "inputs": {"files": args.files, "size": size, "repeat": args.repeat, "workers": args.workers,
                   "directory": str(root.parent), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                   "machine": platform.machine()},
        "baseline_dd_mb_per_s": baseline, "generate_mb_per_s": max(gen_rates),
        "runs": {**{f"dd {flag} mb_per_s": rates for flag, rates in dd_rates.items()},
                 "generate_mb_per_s": gen_rates},
        "ratio": max(gen_rates) / baseline,
    }
    print(f"method:   {result['method']}")
    print(f"inputs:   {args.files} files x {size:,} B in {root.parent} ({os.cpu_count()} CPUs)")
    for flag, rates in dd_rates.items():
        print(f"dd {flag}: {max(rates):.0f} MB/s  (runs {', '.join(f'{x:.0f}' for x in rates)})")
    print(f"baseline: {baseline:.0f} MB/s (best dd)")
    print(f"nightlake generate {result['generate_mb_per_s']:.0f} MB/s  (runs {', '.join(f'{x:.0f}' for x in gen_rates)})")
    print(f"ratio:    {result['ratio']:.2f}  (requirement >= 0.80)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2).replace(f"{Path.cwd()}/", "") + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
