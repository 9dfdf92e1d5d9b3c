"""Helpers of the daemon tests: a daemon started as a user starts it (a process of its own, so it
can be signalled and killed), a writer that drops files and triggers into the DAQ RSE, and what
the journal says."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
from pathlib import Path

from conftest import NIGHTLAKE
from ingest_helpers import journal_counts, write_spec
from nightlake.flows.generate import write_triggered
from nightlake.lake.layout import DAQ, SCOPE
from nightlake.lake.xrootd import storage_area
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec


def watch_dir(lake, name: str) -> Path:
    """A directory of its own under the DAQ RSE's storage area for scope cta (one daemon each)."""
    path = storage_area(lake, DAQ, SCOPE) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def night(tmp_path: Path, site: str, datasets: int, files: int) -> list:
    """The planned files of a small night (6 kB each); `site` keeps names unique on the shared lake."""
    return list(Plan(load_spec(write_spec(tmp_path / f"{site}.toml", site, datasets, files, size="6 kB"))).files())


def write(files: list, out: Path, rate: float = 1000.0, end_markers: bool = False) -> int:
    return write_triggered(files, out, rate, end_markers=end_markers)


@contextlib.contextmanager
def writing(files: list, out: Path, rate: float):
    """A writer thread for the block; the block waits for it with `thread.join()`."""
    thread = threading.Thread(target=write_triggered, args=(files, out, rate), daemon=True)
    thread.start()
    yield thread
    thread.join()


def start(watch: Path, run: Path, *extra: str) -> subprocess.Popen:
    """`nightlake daemon` in the background, quick to batch, rescan and close; its stderr (the
    log) in RUN.log. `extra` options come last, so they win over these."""
    run.parent.mkdir(parents=True, exist_ok=True)
    log = open(run.with_suffix(".log"), "a")
    return subprocess.Popen([NIGHTLAKE, "daemon", str(watch), "--rse", DAQ.name, "--scope", SCOPE, "--run", str(run),
                             "--batch-age", "1", "--rescan", "0.5", "--quiet-time", "5", "--log-every", "5",
                             "--patience", "60", *extra], stdout=log, stderr=log)


def stop(daemon: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    daemon.send_signal(sig)
    return daemon.wait(timeout=120)


def counts(run: Path) -> dict[str, int]:
    """Files per state in the run's journal (read from outside, while the daemon writes it)."""
    return journal_counts(run / "journal.sqlite")


def events(run: Path, kind: str) -> list[dict]:
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def triggers_left(watch: Path) -> list[Path]:
    return sorted(watch.rglob("*.trigger"))
