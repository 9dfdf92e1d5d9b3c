"""CTAO BDMS's own ingestion (`IngestionClient`, ctao-bdms-clients 0.11.1) against nightlake, in one run.

Method. One lake running CTAO's Rucio policy (`lake up --policy ctao`). N FITS files of one shape
(valid CHECKSUM/DATASUM in every HDU, nightlake's header metadata) are written straight into the
on-site RSE's namespace, one tree per method, as ACADA would leave them:
`/ctao/acada/DL0/<tree>/CTAO-North/events/2026/03/14/<file>`. Then, one after the other:

- peer: BDMS's `IngestionClient(data_path, "ONSITE", vo="ctao").add_onsite_replica(path)` for each file,
  as its Celery task does (one client for all files here, which favours it: acada-ingest makes one per
  task), in a Python 3.12 venv of its own; no rules (`process_file` would add them; nightlake adds none
  here either). It verifies each file's FITS checksums (astropy), computes adler32, creates the
  container levels, the dataset, the replica, the metadata and the attachment, one file at a time.
- nightlake: `nightlake ingest <tree> --scope acada --vo ctao --rse ONSITE --in-place` (FITS checks in
  the adler32 pass, containers and datasets once, replicas, attachments and metadata in bulk).
- nightlake-dirac: the same with `--register dirac` (DIRAC's `add_files` instead of the generic calls).

Figures per method: files/s (each method's own clock around its work: the peer's loop, nightlake's run
time from its summary; interpreter start-up excluded for both), Rucio REST calls per file (the lake's
access log), Rucio server CPU per file (the gunicorn master and workers' CPU time from /proc), and the
ratios of nightlake to the peer and of DIRAC to the generic path.

    .venv/bin/python benchmarks/peer_bdms.py --files 500 --lake-dir .nightlake/bench-ctao --port-base 34600
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    BIN,
    ROOT,
    cpu_delta,
    lake_cpu,
    log_offset,
    ratio,
    rest_calls,
    write_result,
)

BDMS = "ctao-bdms-clients==0.11.1"
DAY = "CTAO-North/events/2026/03/14"

PEER = r"""
import json, sys, time
from pathlib import Path
from bdms.acada_ingestion import IngestionClient

data_path, rse, listing = sys.argv[1:4]
paths = Path(listing).read_text().split()
client = IngestionClient(data_path, rse, vo="ctao", reject_missing_metadata=False)
start = time.perf_counter()
results = [client.add_onsite_replica(p) for p in paths]
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "skipped": sum(r.skip_reason is not None for r in results)}))
"""


def bdms_venv(path: Path) -> Path:
    """The peer's own venv (Python 3.12, which CTAO's stack needs), made once from pyenv's 3.12."""
    python = path / "bin" / "python"
    if python.exists():
        return python
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    base = sorted(Path(root, "versions").glob("3.12*"))
    if not base:
        sys.exit("peer_bdms: no Python 3.12 under pyenv; BDMS's clients need it")
    subprocess.run([str(base[-1] / "bin" / "python"), "-m", "venv", str(path)], check=True)
    subprocess.run([str(path / "bin" / "pip"), "install", "-q", BDMS], check=True)
    return python


def write_tree(onsite: Path, tree: str, n: int, size: int, seed: int) -> list[Path]:
    """N FITS files under /ctao/acada/DL0/<tree>/<DAY>/ on the on-site RSE, owned by its server's user."""
    from nightlake.lake.xrootd import run_as
    from nightlake.night.fits.layout import header_bytes, ones_sum

    directory = onsite / "ctao" / "acada" / "DL0" / tree / DAY
    shutil.rmtree(onsite / "ctao" / "acada" / "DL0" / tree, ignore_errors=True)
    directory.mkdir(parents=True)
    paths = []
    for i in range(n):
        payload = ((seed * 1_000_003 + i).to_bytes(8, "big") * (size // 8 + 1))[:size]
        meta = {"origin": "CTAO", "site": "CTAO-North", "night": "2026-03-14", "telescope": tree, "tel_id": 1,
                "obs_id": 1, "run": 1, "subrun": i, "date_obs": "2026-03-14T21:00:00",
                "date_end": "2026-03-14T21:00:10", "data_level": "DL0"}
        path = directory / f"{tree}_obs000001_run000001_{i:05d}.fits"
        path.write_bytes(header_bytes(meta, len(payload), ones_sum(payload)) + payload)
        paths.append(path)
    if user := run_as():
        for p in (onsite / "ctao").rglob("*"):
            shutil.chown(p, user, user)
        shutil.chown(onsite / "ctao", user, user)
    return paths


def measure(lake: Path, work) -> dict:
    """REST calls and server CPU around `work()`, which returns its own seconds and files."""
    offset, cpu = log_offset(lake), lake_cpu(lake)
    seconds, files, extra = work()
    calls = rest_calls(lake, offset)
    server = cpu_delta(cpu, lake_cpu(lake)).get("rucio-server", 0.0)
    return {"files": files, "seconds": round(seconds, 2), "files_per_s": round(files / seconds, 2),
            "rest_calls": calls["total"], "rest_calls_per_file": round(calls["total"] / files, 3),
            "by_endpoint": calls["by_endpoint"], "server_cpu_s": server,
            "server_cpu_ms_per_file": round(1000 * server / files, 2), **extra}


def run_peer(python: Path, env: dict, onsite: Path, paths: list[Path]):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(map(str, paths)))
    out = subprocess.run([str(python), "-c", PEER, str(onsite), "ONSITE", listing.name], env=env,
                         capture_output=True, text=True)
    os.unlink(listing.name)
    if out.returncode:
        sys.exit(f"peer failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], len(paths) - result["skipped"], {"skipped": result["skipped"]}


def run_nightlake(env: dict, onsite: Path, tree: str, work: Path, *extra: str):
    run = work / f"run-{tree}"
    shutil.rmtree(run, ignore_errors=True)
    argv = [str(BIN / "nightlake"), "ingest", str(onsite / "ctao" / "acada" / "DL0" / tree), "--scope", "acada",
            "--vo", "ctao", "--rse", "ONSITE", "--in-place", "--run", str(run), "--quiet", "--json", *extra]
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"nightlake failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    summary = json.loads(out.stdout)
    # the run's own time: from journaling the source to the last dataset closed
    return summary["elapsed_s"], summary["files"]["done"], {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--size", type=int, default=100_800,
                        help="payload bytes per file, a multiple of 2880 (FITS blocks; plus a 2880-byte header)")
    parser.add_argument("--lake-dir", type=Path, default=ROOT / ".nightlake" / "bench-ctao")
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT", 34600)))
    parser.add_argument("--bdms-venv", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nightlake"
                        / "bdms-clients-0.11.1")
    args = parser.parse_args()
    if args.size % 2880:
        parser.error("--size must be a multiple of 2880 (whole FITS blocks)")
    lake = args.lake_dir.absolute()
    subprocess.run([str(BIN / "nightlake"), "lake", "up", "--policy", "ctao", "--dir", str(lake),
                    "--port-base", str(args.port_base)], check=True)
    env_lines = subprocess.run([str(BIN / "nightlake"), "lake", "env", "--dir", str(lake)], check=True,
                               capture_output=True, text=True).stdout.splitlines()
    env = {**os.environ, **{k: v.strip("'\"") for k, _, v in (line.removeprefix("export ").partition("=")
                                                                for line in env_lines)}}
    python = bdms_venv(args.bdms_venv)
    onsite = lake / "storage" / "ONSITE" / "rucio"
    stamp = time.strftime("%H%M%S")
    trees = {m: f"{m}-{stamp}" for m in ("peer", "nightlake", "dirac")}
    paths = {m: write_tree(onsite, t, args.files, args.size, seed) for seed, (m, t) in enumerate(trees.items())}
    work = Path(tempfile.mkdtemp(prefix="peer-bdms-"))
    results = {
        "peer": measure(lake, lambda: run_peer(python, env, onsite, paths["peer"])),
        "nightlake": measure(lake, lambda: run_nightlake(env, onsite, trees["nightlake"], work)),
        "nightlake-dirac": measure(lake, lambda: run_nightlake(env, onsite, trees["dirac"], work,
                                                                "--register", "dirac")),
    }
    shutil.rmtree(work, ignore_errors=True)
    ng, peer, dirac = results["nightlake"], results["peer"], results["nightlake-dirac"]
    ratios = {"nightlake/peer files_per_s": ratio(ng["files_per_s"], peer["files_per_s"]),
              "peer/nightlake rest_calls_per_file": ratio(peer["rest_calls_per_file"], ng["rest_calls_per_file"]),
              "peer/nightlake server_cpu_per_file": ratio(peer["server_cpu_ms_per_file"], ng["server_cpu_ms_per_file"]),
              "dirac/generic files_per_s": ratio(dirac["files_per_s"], ng["files_per_s"]),
              "dirac/generic rest_calls_per_file": ratio(dirac["rest_calls_per_file"], ng["rest_calls_per_file"]),
              "dirac/generic server_cpu_per_file": ratio(dirac["server_cpu_ms_per_file"],
                                                         ng["server_cpu_ms_per_file"])}
    inputs = {"files": args.files, "file_bytes": args.size + 2880, "rse": "ONSITE (XRootD, in place)",
              "peer": BDMS, "policy": "ctao-bdms-rucio-policy 0.6.0"}
    print(f"peer_bdms: {args.files} FITS files of {args.size + 2880} bytes per method, already on ONSITE")
    for name, r in results.items():
        print(f"  {name:16s} {r['files_per_s']:8.2f} files/s  {r['rest_calls_per_file']:7.3f} calls/file  "
              f"{r['server_cpu_ms_per_file']:7.2f} ms server CPU/file  ({r['seconds']} s)")
    for name, value in ratios.items():
        print(f"  {name}: {value}")
    print(f"  written {write_result('peer_bdms', {'inputs': inputs, 'results': results, 'ratios': ratios})}")


if __name__ == "__main__":
    main()
