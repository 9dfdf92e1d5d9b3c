"""Shared helpers of the benchmarks: the bench lake's environment, its processes' CPU, its access log,
and a results/ writer that records the machine and versions with every figure.

Nothing here imports rucio: rucio-clients reads RUCIO_CONFIG at first import, so each benchmark sets
the bench lake's environment first (`use_lake`) and imports rucio inside functions afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_LAKE = ROOT / ".nightlake" / "bench-lake"
DEFAULT_PORT_BASE = 29600
CLK_TCK = os.sysconf("SC_CLK_TCK")


def lake_env(lake_dir: Path) -> dict[str, str]:
    """The variables `nightlake lake env` prints, as a dict (RUCIO_CONFIG, X509_USER_PROXY, PATH, ...)."""
    out = subprocess.run([str(BIN / "nightlake"), "lake", "env", "--dir", str(lake_dir)],
                         check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


def use_lake(lake_dir: Path) -> dict[str, str]:
    """Point this process (and its children) at the bench lake; return the full environment."""
    os.environ.update(lake_env(lake_dir))
    return dict(os.environ)


def lake_pids(lake_dir: Path) -> dict[str, int]:
    """{component: pid} from the lake's pids/*.json (rucio-server, postgresql, xrootd-*, daemons)."""
    return {p.stem: json.loads(p.read_text())["pid"] for p in sorted((lake_dir / "pids").glob("*.json"))}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cpu_of(pid: int, reaped: bool) -> float:
    """CPU seconds of a process (utime+stime), plus its reaped children's (cutime+cstime) if asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / CLK_TCK


def tree_cpu(pid: int, tree: dict[int, list[int]] | None = None) -> float:
    """CPU seconds of a process and all its descendants, living or reaped (a gunicorn master and its
    workers; a postmaster and its backends, which come and go with connections)."""
    tree = _children() if tree is None else tree
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += _cpu_of(p, reaped=True)
        stack += tree.get(p, [])
    return total


def lake_cpu(lake_dir: Path) -> dict[str, float]:
    """CPU seconds per lake component, each with its process tree."""
    tree = _children()
    return {name: round(tree_cpu(pid, tree), 2) for name, pid in lake_pids(lake_dir).items()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - v, 2) for k, v in before.items()}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, /proc/stat: everything but idle and iowait).
    Minus the benchmark's own processes this is the load other users put on the machine meanwhile."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def access_log(lake_dir: Path) -> Path:
    return lake_dir / "logs" / "rucio-access.log"


def log_offset(lake_dir: Path) -> int:
    path = access_log(lake_dir)
    return path.stat().st_size if path.exists() else 0


def rest_calls(lake_dir: Path, start: int, end: int | None = None) -> dict:
    """Rucio REST calls between two offsets of the access log: total, and per 'METHOD /first/segment'."""
    time.sleep(0.5)  # gunicorn writes its access line after the response
    with open(access_log(lake_dir), "rb") as f:
        f.seek(start)
        data = f.read() if end is None else f.read(end - start)
    per: dict[str, int] = {}
    total = 0
    for line in data.decode(errors="replace").splitlines():
        # gunicorn common format: host - - [date] "METHOD /path HTTP/1.1" status size ...
        try:
            request = line.split('"')[1]
            method, path = request.split()[:2]
        except (IndexError, ValueError):
            continue
        total += 1
        segs = [s for s in path.split("?")[0].split("/") if s][:1]
        key = f"{method} /{'/'.join(segs)}"
        per[key] = per.get(key, 0) + 1
    return {"total": total, "by_endpoint": dict(sorted(per.items(), key=lambda kv: -kv[1]))}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "ram_gb": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import version

    out = {"nightlake": version("nightlake"), "rucio-clients": version("rucio-clients")}
    for key, cmd in (("postgresql", ["/usr/lib/postgresql/15/bin/postgres", "--version"]),
                     ("xrootd", ["xrootd", "-v"]), ("curl", ["curl", "--version"]),
                     ("xrdcp", ["xrdcp", "--version"])):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[key] = (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            out[key] = None
    return out


def server_version() -> str | None:
    """The Rucio server's version (needs the lake env set)."""
    from rucio.client import Client

    return Client().ping().get("version")


def method(doc: str) -> str:
    """The "Method: ..." paragraph of a benchmark's docstring, for its printout and its result file."""
    return doc.split("Method: ")[1].split("\n\n")[0]


def scratch(name: str) -> Path:
    """A fresh working directory for one benchmark run, under the checkout's .nightlake/scratch and
    readable by the lake's unprivileged servers (mode 0755)."""
    path = ROOT / ".nightlake" / "scratch" / f"bench-{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


def write_result(name: str, result: dict) -> Path:
    """benchmarks/results/<name>.json with date, machine and versions added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "versions": versions(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(relative(json.dumps(result, indent=2, default=str)) + "\n")
    return path


def relative(text: str) -> str:
    """Paths inside the checkout written relative to it: results must not name the machine they ran on."""
    return text.replace(f"{ROOT}/", "").replace(str(Path.home()), "~")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def target_line(name: str, value, op: str, target, unit: str = "") -> str:
    ok = None if value is None else (value >= target if op == ">=" else value <= target)
    verdict = "n/a" if ok is None else ("MET" if ok else "MISSED")
    return f"  {name}: {value}{unit} (target {op} {target}{unit}) -> {verdict}"


def journal_counts(journal: Path) -> dict[str, int]:
    """Files per state of a run's journal, read from outside while the run goes on (empty while it
    is being made or cannot be read yet)."""
    if not journal.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            return dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}


def night_spec(site: str, datasets: int, files: int, size: str, telescopes: str, seed: int = 11) -> str:
    """A night spec of `datasets` x `files` files of one `size`, as the benchmarks ingest them;
    `site` keeps their DID names apart from other runs on the same lake."""
    return f"""[night]
site = "{site}"
date = 2026-03-14
scope = "cta"
seed = {seed}
telescopes = {telescopes}

[datasets]
count = {datasets}
files = {files}

[sizes]
kind = "fixed"
size = "{size}"
"""
