"""Retrieve against the real lake: what comes back is byte for byte what went in, a killed run
resumes without downloading anything twice, and a corrupted replica fails alone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import NIGHTLAKE, nightlake
from nightlake.lake.layout import RSES, SCOPE

pytestmark = pytest.mark.lake
ONSITE = next(r for r in RSES if r.name == "ONSITE")


def _night(root: Path, dataset: str, count: int, size: int, telescopes=("LST-1", "LST-2")) -> dict[str, bytes]:
    """`count` random files in ROOT/DATASET, each with a metadata sidecar; name -> bytes."""
    directory = root / dataset
    directory.mkdir(parents=True)
    files = {}
    for i in range(count):
        name = f"{dataset}_{i:04d}.fits"
        files[name] = os.urandom(size)
        (directory / name).write_bytes(files[name])
        meta = {"telescope": telescopes[i % len(telescopes)], "night": dataset}
        (directory / (name + ".meta.json")).write_text(json.dumps(meta))
    return files


def _ingest(scratch: Path, source: Path) -> None:
    nightlake("ingest", str(source), "--rse", "ONSITE", "--scope", SCOPE, "--run", str(scratch / "ingest-run"),
              "--quiet")


def _retrieve(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return nightlake("retrieve", *args, "--quiet", check=check)


def _downloaded(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / SCOPE).iterdir()}


@pytest.fixture(scope="module")
def night(lake, tmp_path_factory):
    """Two datasets of small files, ingested once for this module: (token, {dataset: {name: bytes}})."""
    token = uuid.uuid4().hex[:8]
    root = Path(tmp_path_factory.mktemp("night"))
    root.chmod(0o755)
    datasets = {f"rt-{token}-{x}": _night(root / "src", f"rt-{token}-{x}", 12, 20_000) for x in "ab"}
    _ingest(root, root / "src")
    return token, datasets


def test_a_dataset_comes_back_byte_for_byte(night, scratch):
    token, datasets = night
    dataset = f"rt-{token}-a"
    out = scratch / "out"
    result = _retrieve(f"{SCOPE}:{dataset}", "--out", str(out), "--run", str(scratch / "run"), "--json")
    summary = json.loads(result.stdout)
    assert summary["complete"] and summary["files"]["done"] == 12
    assert _downloaded(out) == datasets[dataset]


def test_a_whole_dataset_is_read_from_the_pfns_rucio_itself_lists(night):
    from nightlake.catalog.client import Catalog
    from nightlake.flows.retrieve.replicas import SCHEMES, ReadPriorities, ReplicaChooser, choose_replica

    token, datasets = night
    catalog = Catalog()
    files = list(catalog.files_in([(SCOPE, f"rt-{token}-a")]))
    by_dataset = {r["name"]: (r["rse"], r["pfn"]) for r in ReplicaChooser(catalog, None, None).rows(files)}
    listed = catalog.replicas([(f["scope"], f["name"]) for f in files], SCHEMES)
    priorities = ReadPriorities(catalog)
    assert by_dataset == {name: choose_replica(r, None, priorities) for (_, name), r in listed.items()}
    assert {rse for rse, _ in by_dataset.values()} == {"ONSITE"}


def test_a_metadata_selection_spans_datasets(night, scratch):
    token, datasets = night
    out = scratch / "out"
    _retrieve("--filter", f"night=rt-{token}-a", "--filter", "telescope=LST-2", "--scope", SCOPE,
              "--out", str(out), "--run", str(scratch / "run"))
    expected = {n: b for n, b in datasets[f"rt-{token}-a"].items() if int(n[-9:-5]) % 2 == 1}
    assert _downloaded(out) == expected


def test_rerunning_a_finished_retrieve_downloads_nothing(night, scratch):
    token, _ = night
    args = (f"{SCOPE}:rt-{token}-b", "--out", str(scratch / "out"), "--run", str(scratch / "run"))
    _retrieve(*args)
    inodes = {p.name: p.stat().st_ino for p in (scratch / "out" / SCOPE).iterdir()}
    summary = json.loads(_retrieve(*args, "--json").stdout)
    assert summary["complete"]
    assert {p.name: p.stat().st_ino for p in (scratch / "out" / SCOPE).iterdir()} == inodes


def _done_count(journal: Path) -> int:
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM files WHERE state = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def _batch_files(events: Path, skip_lines: int) -> int:
    lines = events.read_text().splitlines()[skip_lines:]
    return sum(e.get("files", 0) for e in map(json.loads, lines) if e["kind"] == "retrieve.batch")


def test_a_killed_retrieve_resumes_without_downloading_twice(lake, scratch):
    token = uuid.uuid4().hex[:8]
    dataset = f"rt-{token}-kill"
    files = _night(scratch / "src", dataset, 300, 4_000)
    _ingest(scratch, scratch / "src")
    out, run = scratch / "out", scratch / "run"
    args = [f"{SCOPE}:{dataset}", "--out", str(out), "--run", str(run), "--workers", "1", "--batch", "10", "--quiet"]
    process = subprocess.Popen([NIGHTLAKE, "retrieve", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _done_count(run / "retrieve.sqlite") < 30 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the retrieve finished before it could be killed"
    present = {p.name: p.stat().st_ino for p in (out / SCOPE).iterdir() if p.name in files}
    assert 30 <= len(present) < len(files)
    lines_before = len((run / "events.jsonl").read_text().splitlines())

    _retrieve(*args[:-1])

    assert _downloaded(out) == files  # complete, verified, no temporaries left
    assert {n: (out / SCOPE / n).stat().st_ino for n in present} == present  # none fetched again
    assert _batch_files(run / "events.jsonl", lines_before) == len(files) - len(present)


def test_a_corrupted_replica_fails_with_a_checksum_error_and_the_others_succeed(lake, scratch):
    from rucio.client import Client

    token = uuid.uuid4().hex[:8]
    dataset = f"rt-{token}-bad"
    files = _night(scratch / "src", dataset, 5, 10_000)
    _ingest(scratch, scratch / "src")
    victim = sorted(files)[2]
    replica = next(Client().list_replicas([{"scope": SCOPE, "name": victim}], schemes=["root"]))
    pfn = replica["rses"]["ONSITE"][0]
    on_disk = lake.rse_data(ONSITE) / pfn.split("//", 2)[2].lstrip("/")
    corrupted = bytearray(on_disk.read_bytes())
    corrupted[100] ^= 0xFF
    on_disk.write_bytes(bytes(corrupted))

    out = scratch / "out"
    result = _retrieve(f"{SCOPE}:{dataset}", "--out", str(out), "--run", str(scratch / "run"), "--json", check=False)

    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    (problem,) = summary["problems"]
    assert problem["did"] == f"{SCOPE}:{victim}" and problem["error_class"] == "permanent"
    assert "adler32 mismatch" in problem["message"]
    assert _downloaded(out) == {n: b for n, b in files.items() if n != victim}
