"""Exactly once under crashes: an ingest killed with SIGKILL at any point and run again registers
every file once, and leaves on storage exactly the registered files; altered or mis-checksummed
bytes are never registered as good."""

from __future__ import annotations

import os

import pytest

from ingest_helpers import (
    adler32,
    kill_when,
    nightlake,
    stored_files,
    summary,
    write_spec,
)
from nightlake.lake.layout import RSES
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec

pytestmark = pytest.mark.lake
ONSITE = RSES[0]

# When to kill, as a condition on the journal's counts (the run is watched from outside).
KILL_POINTS = {
    "while-uploading": lambda c: c.get("uploading", 0) + c.get("uploaded", 0) > 0 and not c.get("done"),
    "while-registering": lambda c: 0 < c.get("done", 0) < 600,
    "near-the-end": lambda c: c.get("done", 0) >= 1000,
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_registers_every_file_exactly_once(lake, scratch, point):
    from rucio.client import Client

    site = f"CRASH{list(KILL_POINTS).index(point)}"
    spec_path = write_spec(scratch / "night.toml", site, datasets=3, files=400, size="20 kB",
                           rules='[[rules]]\nrse_expression = "ONSITE"')
    run = scratch / "run"
    args = ["ingest", str(spec_path), "--rse", ONSITE.name, "--run", str(run), "--batch", "100", "--quiet"]
    at_kill = kill_when(args, run / "journal.sqlite", KILL_POINTS[point])
    assert sum(at_kill.values()) == 1200 and at_kill.get("done", 0) < 1200

    result = nightlake(*args)
    assert result.returncode == 0, result.stderr
    assert summary(run)["files"]["done"] == 1200

    client = Client()
    plan = Plan(load_spec(spec_path))
    registered = []
    for dataset in plan.datasets():
        names = [f["name"] for f in client.list_files("cta", dataset.name)]
        assert sorted(names) == sorted(f.name for f in plan.dataset_files(dataset))
        registered += names
        assert [r["state"] for r in client.list_did_rules("cta", dataset.name)] == ["OK"]
    replicas = [r for start in range(0, len(registered), 500) for r in client.list_replicas(
        [{"scope": "cta", "name": n} for n in registered[start:start + 500]])]
    assert len(replicas) == 1200
    on_storage = {p for p in stored_files(lake, ONSITE) if site in p}
    registered_paths = {next(iter(r["rses"][ONSITE.name])).split("/rucio/", 1)[1] for r in replicas}
    assert on_storage == registered_paths, "dark data or missing files on storage"


def test_bytes_altered_on_storage_before_registration_are_never_registered(lake, scratch, monkeypatch):
    from rucio.client import Client

    from nightlake.catalog import client as catalog
    from nightlake.catalog.failures import Classified, ErrorClass
    from nightlake.catalog.retry import GaveUp
    from nightlake.flows.ingest.context import IngestOptions
    from nightlake.flows.ingest.run import IngestRequest, run_ingest
    from nightlake.night.payload import open_stream
    from nightlake.observe.events import EventBus
    from nightlake.runs.journal.ingest import FileState, IngestJournal

    spec_path = write_spec(scratch / "night.toml", "ALTERED", datasets=1, files=10, size="30 kB")
    request = IngestRequest(source=spec_path, run=scratch / "run", options=IngestOptions(rse=ONSITE.name))
    outage = GaveUp("catalog", Classified(ErrorClass.TRANSIENT_CATALOG, "ServiceUnavailable: down"), 5,
                    RuntimeError("down"))
    with monkeypatch.context() as patch:  # the catalog is down after the upload: files stay on storage
        patch.setattr(catalog.Catalog, "add_replicas",
                      lambda self, rse, files: [catalog.Rejected(f, outage) for f in files])
        first = run_ingest(request, EventBus())
    assert first["files"]["failed"] == 10

    with IngestJournal.open(scratch / "run" / "journal.sqlite") as journal:
        victim = next(journal.batches(FileState.FAILED))[0]
    stored = lake.rse_data(ONSITE) / "rucio" / victim.pfn.split("/rucio/", 1)[1]
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    later = stored.stat().st_mtime + 5  # XRootD caches checksums per mtime (in seconds): make the change visible
    os.utime(stored, (later, later))

    result = nightlake("ingest", str(spec_path), "--rse", ONSITE.name, "--run", str(scratch / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    planned = next(f for f in Plan(load_spec(spec_path)).files() if f.name == victim.name)
    expected = b"".join(open_stream(planned).iter_chunks())
    assert stored.read_bytes() == expected
    registered = next(Client().list_replicas([{"scope": "cta", "name": victim.name}]))
    assert registered["adler32"] == adler32(expected)


def test_a_wrong_checksum_reported_by_storage_fails_the_file_and_registers_nothing(lake, scratch, monkeypatch):
    from rucio.client import Client
    from rucio.common.exception import DataIdentifierNotFound

    from nightlake.flows.ingest.context import IngestOptions
    from nightlake.flows.ingest.run import IngestRequest, run_ingest
    from nightlake.observe.events import EventBus
    from nightlake.storage.https import HttpsStorage

    monkeypatch.setattr(HttpsStorage, "_checksum", lambda self, pfn: "deadbeef")
    spec_path = write_spec(scratch / "night.toml", "WRONGSUM", datasets=1, files=3, size="10 kB")
    request = IngestRequest(source=spec_path, run=scratch / "run", options=IngestOptions(rse=ONSITE.name),
                            scheme="https")
    result = run_ingest(request, EventBus())
    assert result["files"]["failed"] == 3 and result["files"]["done"] == 0
    assert {p["error_class"] for p in result["problems"]} == {"permanent"}
    assert all("adler32 mismatch" in p["message"] for p in result["problems"])
    for planned in Plan(load_spec(spec_path)).files():
        with pytest.raises(DataIdentifierNotFound):
            Client().get_did("cta", planned.name)
    assert not {p for p in stored_files(lake, ONSITE) if "WRONGSUM" in p}
