"""Riding through outages, against the lake: the Rucio server, its PostgreSQL and the upload RSE
are each stopped by PID in the middle of an ingest and started again well within the patience
window; the ingest finishes by itself with exit 0, nothing failed, nothing twice, and storage holds
exactly what the catalog lists. The same for a retrieve whose source RSE restarts."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NIGHTLAKE, nightlake
from ingest_helpers import journal_counts, stored_files, summary, write_spec
from nightlake.lake import processes
from nightlake.lake.layout import RSES

pytestmark = pytest.mark.lake
ONSITE = RSES[0]
DOWN_S = 16  # how long a service stays down: longer than one call's retries, far inside the patience window


def _when(journal: Path, condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition(journal_counts(journal)):
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run ended or stalled before the outage point (exit {proc.poll()})")


def _restart(lake, name: str) -> None:
    """Stop the lake's own process `name` by PID, leave it down a while, and start it again."""
    proc = processes.read(lake.pids, name)
    assert proc is not None and proc.alive(), f"{name} is not running"
    processes.stop(lake.pids, proc, {"postgresql": signal.SIGINT, "rucio-server": signal.SIGTERM}.get(name, signal.SIGKILL))
    time.sleep(DOWN_S)
    nightlake("lake", "up", "--dir", str(lake.root))


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not finish after the service came back")
    return proc.returncode, stderr


# The upload RSE over https: root:// would not show the breaker at work, because the XRootD client
# itself reconnects for up to its connection window before it reports an error.
SERVICES = {"rucio-server": [], "postgresql": [], f"xrootd-{ONSITE.name}": ["--scheme", "https"]}


@pytest.mark.parametrize("service", SERVICES)
def test_an_ingest_rides_through_a_restart(lake, scratch, service):
    from rucio.client import Client

    site = f"OUTAGE{list(SERVICES).index(service)}"
    spec = write_spec(scratch / "night.toml", site, datasets=2, files=600, size="20 kB")
    run = scratch / "run"
    proc = subprocess.Popen([NIGHTLAKE, "ingest", str(spec), "--rse", ONSITE.name, "--run", str(run),
                             "--batch", "100", "--patience", "300", *SERVICES[service]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _when(run / "journal.sqlite", lambda c: 0 < c.get("done", 0) < 900, proc)
    _restart(lake, service)
    code, stderr = _finish(proc)

    assert code == 0, stderr
    result = summary(run)
    assert (result["files"]["done"], result["files"]["failed"]) == (1200, 0)
    assert "is down, waiting up to 300 s" in stderr and "is back after" in stderr  # it said what it waited for
    client = Client()
    dids = _journaled_dids(run)
    registered = [r for start in range(0, len(dids), 500) for r in client.list_replicas(dids[start:start + 500])]
    assert len(registered) == 1200  # every file once
    on_storage = {p for p in stored_files(lake, ONSITE) if site in p}
    registered_paths = {next(iter(r["rses"][ONSITE.name])).split("/rucio/", 1)[1] for r in registered}
    assert on_storage == registered_paths, "dark data or missing files on storage"


def _journaled_dids(run: Path) -> list[dict]:
    with sqlite3.connect(f"file:{run / 'journal.sqlite'}?mode=ro", uri=True) as db:
        return [{"scope": scope, "name": name} for scope, name in db.execute("SELECT scope, name FROM files")]


def test_a_retrieve_rides_through_a_restart_of_its_source_rse(lake, scratch):
    site = "OUTAGER"
    spec = write_spec(scratch / "night.toml", site, datasets=1, files=800, size="20 kB")
    nightlake("ingest", str(spec), "--rse", ONSITE.name, "--run", str(scratch / "in"), "--quiet")
    assert summary(scratch / "in")["complete"]  # the night is in the lake
    with sqlite3.connect(f"file:{scratch / 'in' / 'journal.sqlite'}?mode=ro", uri=True) as db:
        (name,) = db.execute("SELECT name FROM datasets").fetchone()
    run = scratch / "out-run"
    proc = subprocess.Popen([NIGHTLAKE, "retrieve", f"cta:{name}", "--out", str(scratch / "dl"), "--run", str(run),
                             "--batch", "100", "--patience", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _when(run / "retrieve.sqlite", lambda c: 0 < c.get("done", 0) < 600, proc)
    _restart(lake, f"xrootd-{ONSITE.name}")
    code, stderr = _finish(proc)

    assert code == 0, stderr
    result = summary(run)
    assert (result["files"]["done"], result["files"]["failed"]) == (800, 0)
    assert "is back after" in stderr
    assert len(list((scratch / "dl" / "cta").iterdir())) == 800
