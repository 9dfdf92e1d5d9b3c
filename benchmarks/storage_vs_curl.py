"""nightlake storage put vs the reference CLIs, same file, same endpoint, same run.

https: `HttpsStorage.put` (PUT part + HEAD Digest + PROPFIND + MOVE) vs `curl -T` (one PUT).
root:  `RootStorage.put` (open/write/close + checksum query + stat + mv) vs `xrdcp` (one copy).
Prints JSON with MiB/s and the ratio nightlake/reference. Usage:
    python benchmarks/storage_vs_curl.py --lake-dir .nightlake/lake [--mib 256] [--rse ONSITE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from nightlake.lake.layout import RSES, Layout
from nightlake.storage import open_storage


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lake-dir", type=Path, required=True)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rse", default="ONSITE")
    args = parser.parse_args()
    layout = Layout.load_or_new(args.lake_dir.absolute())
    rse = next(r for r in RSES if r.name == args.rse)
    ca, proxy = str(layout.ca_cert), str(layout.proxy)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "bench.bin"
        with open(source, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        size = source.stat().st_size
        run = uuid.uuid4().hex[:8]
        https = f"https://127.0.0.1:{layout.https_port(rse)}/rucio/nightlake-bench/{run}"
        root = f"root://127.0.0.1:{layout.root_port(rse)}//rucio/nightlake-bench/{run}"
        results = {"mib": args.mib}
        for scheme, base, ref_cmd in (
            ("https", https, lambda dst: ["curl", "-sS", "-f", "--cacert", ca, "--cert", proxy, "-T",
                                          str(source), "-o", "/dev/null", dst]),
            ("root", root, lambda dst: ["xrdcp", "-s", "-f", str(source), dst]),
        ):
            store = open_storage({"scheme": scheme}, ca_cert=ca, client_cert=proxy)
            ours = timed(lambda: store.put(f"{base}/nightlake.bin", source, size=size))
            ref = timed(lambda: subprocess.run(ref_cmd(f"{base}/reference.bin"), check=True))
            results[scheme] = {"nightlake_mib_s": round(args.mib / ours, 1),
                               "reference_mib_s": round(args.mib / ref, 1),
                               "reference": ref_cmd("X")[0],
                               "ratio": round(ref / ours, 2)}
            for name in ("nightlake.bin", "reference.bin"):
                store.delete(f"{base}/{name}")
            store.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
