"""A campaign against the lake: three phases, killed with SIGKILL during the second (which runs
with its RSE throttled), run again: every phase's files are registered once, the stale fault is
cleared, and the campaign report's counts are the journals'. Bad phases are refused before the
first phase starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TEST_LAKE_DIR
from ingest_helpers import dids, journal_counts, kill_when, nightlake, write_spec
from nightlake.lake import faults
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec

pytestmark = pytest.mark.lake

PHASES = [  # name, site, RSE, datasets x files, extra TOML
    ("p1-small", "CAMPAIGN1", "ONSITE", (2, 4), 'rules = [{ rse_expression = "OFFSITE-A" }]\nwatch = 300'),
    ("p2-throttled", "CAMPAIGN2", "OFFSITE-B", (3, 60), 'fault = "slow"\nwatch = 0'),
    ("p3-large", "CAMPAIGN3", "ONSITE", (1, 2), 'rules = [{ rse_expression = "OFFSITE-A" }]\nwatch = 300'),
]


def campaign_file(scratch: Path, phases=PHASES, sizes=("20 kB", "20 kB", "3 MB")) -> Path:
    text = '[campaign]\nname = "acceptance"\n'
    for (name, site, rse, (datasets, files), extra), size in zip(phases, sizes):
        write_spec(scratch / f"{name}.toml", site, datasets=datasets, files=files, size=size)
        text += f'\n[[phases]]\nname = "{name}"\nsource = "{name}.toml"\nrse = "{rse}"\n{extra}\n'
    path = scratch / "campaign.toml"
    path.write_text(text)
    return path


def uploading(counts: dict[str, int]) -> bool:
    """Phase 2's journal has files, and some of them are on their way (not all planned, not all done)."""
    total = sum(counts.values())
    return bool(total) and counts.get("done", 0) < total and counts.get("planned", 0) < total


def test_a_campaign_killed_in_phase_2_resumes_and_registers_every_file_once(lake, scratch):
    from rucio.client import Client

    path, run = campaign_file(scratch), scratch / "campaign"
    args = ["campaign", str(path), "--run", str(run), "--lake-dir", str(TEST_LAKE_DIR), "--interval", "2"]
    at_kill = kill_when(args, run / "02-p2-throttled" / "journal.sqlite", uploading, timeout=300)
    assert sum(at_kill.values()) == 180 and at_kill.get("done", 0) < 180
    assert faults.current(lake) == {"OFFSITE-B": "slow"}, "the kill left phase 2's fault on"

    again = nightlake(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cleared the fault slow that the interrupted phase p2-throttled left on OFFSITE-B" in again.stderr
    assert "phase 1 p1-small: finished before, skipped" in again.stderr
    assert "phase 2 p2-throttled: ingest into OFFSITE-B with the fault slow on it" in again.stderr  # re-applied
    assert faults.current(lake) == {}

    client = Client()
    for name, site, rse, (datasets, files), _ in PHASES:
        plan = Plan(load_spec(scratch / f"{name}.toml"))
        names = []
        for dataset in plan.datasets():
            listed = [f["name"] for f in client.list_files("cta", dataset.name)]
            assert sorted(listed) == sorted(f.name for f in plan.dataset_files(dataset)), dataset.name
            names += listed
        assert len(names) == len(set(names)) == datasets * files
        replicas = list(client.list_replicas([{"scope": "cta", "name": n} for n in names]))
        assert len(replicas) == len(names) and all(len(r["rses"][rse]) == 1 for r in replicas)
        assert dids(f"site={site}") == set(names)  # the stock rucio CLI lists each file once

    out = scratch / "report"
    report = nightlake("report", str(run), "--out", str(out))
    assert report.returncode == 0, report.stderr
    data = json.loads((out / "report.json").read_text())
    assert [p["name"] for p in data["phases"]] == [p[0] for p in PHASES]
    for index, phase in enumerate(data["phases"]):
        counts = journal_counts(run / f"{index + 1:02d}-{phase['name']}" / "journal.sqlite")
        assert {k: v for k, v in phase["files"].items() if v and k != "total"} == counts
        assert phase["files"]["total"] == sum(counts.values())
    assert data["phases"][1]["fault"] == "slow"  # (the killed session may have lost its last second of events)
    for phase in (data["phases"][0], data["phases"][2]):
        assert phase["replication"]["OFFSITE-A"]["ok"] == phase["files"]["total"]


@pytest.mark.parametrize("change, message", [
    (lambda p: p[:2] + [(*p[2][:2], "NOWHERE", *p[2][3:])], "phase p3-large: RSE 'NOWHERE' is not known"),
    (lambda p: p[:2] + [(*p[2][:4], 'rules = [{ rse_expression = "tier=7" }]')],
     "phase p3-large: invalid RSE expression 'tier=7'"),
    (lambda p: [p[0], (*p[1][:4], 'fault = "sluggish"'), p[2]], "phase p2-throttled: unknown fault 'sluggish'"),
])
def test_a_bad_later_phase_is_refused_before_the_first_starts(lake, scratch, change, message):
    path, run = campaign_file(scratch, change(PHASES)), scratch / "campaign"
    result = nightlake("campaign", str(path), "--run", str(run), "--lake-dir", str(TEST_LAKE_DIR))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not run.exists()


def test_a_missing_spec_in_a_later_phase_is_refused_before_the_first_starts(lake, scratch):
    path, run = campaign_file(scratch), scratch / "campaign"
    (scratch / "p3-large.toml").unlink()
    result = nightlake("campaign", str(path), "--run", str(run), "--lake-dir", str(TEST_LAKE_DIR))
    assert result.returncode == 2 and "phase p3-large: " in result.stderr and "no such spec file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not run.exists()
