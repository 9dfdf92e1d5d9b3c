"""`make demo`'s night, run against the test lake: it ends with a report that opens in headless
Chromium without errors, and whose figures are the journal's own counts."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import CHROMIUM, NIGHTLAKE, REPO, open_in_chromium

pytestmark = pytest.mark.lake


@pytest.fixture(scope="module")
def demo(lake):
    """examples/demo.sh with the test lake as its lake: plan, generate, ingest, watch, retrieve, report."""
    env = {**os.environ, "NIGHTLAKE_LAKE_DIR": str(lake.root),
           "PATH": f"{Path(NIGHTLAKE).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        result = subprocess.run(["bash", str(REPO / "examples" / "demo.sh")], capture_output=True, text=True,
                                env=env, timeout=1800)
    finally:  # the demo's fault drill must not outlive it, whatever happened
        subprocess.run([NIGHTLAKE, "lake", "fault", "--dir", str(lake.root), "OFFSITE-B", "--clear"],
                       capture_output=True, check=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    work = lake.root / "demo"
    yield result.stdout, work / "run", work / "report", work / "retrieve"
    shutil.rmtree(work, ignore_errors=True)


def _journal(run: Path, query: str, name: str = "journal.sqlite") -> list[tuple]:
    with sqlite3.connect(f"file:{run / name}?mode=ro", uri=True) as db:
        return db.execute(query).fetchall()


def test_the_demo_prints_where_its_run_and_report_are(demo):
    stdout, run, report, retrieve = demo
    assert f"report:    {report / 'index.html'}" in stdout and f"run:       {run}" in stdout
    assert f"retrieve:  {retrieve}" in stdout


def test_the_stock_client_downloads_the_dataset_from_both_offsite_rses(demo):
    stdout, run, _, _ = demo
    dataset = "cta:CTAO-North_20260314_obs000001_run000001"
    for rse in ("OFFSITE-A", "OFFSITE-B"):
        assert f"60 files of {dataset} downloaded from {rse}" in stdout


def test_the_second_offsite_copy_came_from_offsite(lake, demo):
    """Both watches end OK, and every copy of the night into OFFSITE-B read from OFFSITE-A (the
    transfer service's own record of it, a retried copy included): the site's uplink was crossed once."""
    from nightlake.lake.layout import RSES

    stdout, run, _, _ = demo
    assert sorted({r for (r,) in _journal(run, "SELECT rse_expression FROM rules")}) == ["OFFSITE", "OFFSITE-A"]
    assert "3 of 3 rules OK" in stdout and "6 of 6 rules OK" in stdout
    with sqlite3.connect(f"file:{lake.root / 'transfers' / 'jobs.sqlite'}?mode=ro", uri=True) as db:
        copies = db.execute("SELECT dest_surl, source_surl FROM files WHERE dest_surl LIKE ? AND dest_surl LIKE ?",
                            (f"%:{lake.https_port(RSES[2])}/%", "%CTAO-North_20260314%")).fetchall()
    assert len({dest for dest, _ in copies}) == 180
    assert all(f":{lake.https_port(RSES[1])}/" in source for _, source in copies)


def test_the_fault_drill_goes_stuck_with_its_errors_classified_then_ok(demo):
    stdout = demo[0]
    drill = stdout[stdout.index("a fault drill"):stdout.index("retrieve: one dataset back")]
    stuck, cleared = drill.split("the fault cleared; rules retry")
    assert "fault: readonly" in stuck, drill  # lake status
    assert "0 of 1 rules OK, 1 STUCK" in stuck, drill
    assert "error [destination-refused] × 4 at OFFSITE-B: RequestErrMsg.TRANSFER_FAILED:DESTINATION" in stuck, drill
    assert "the judge-repairer has taken up the retried rules" in cleared, drill
    assert "1 of 1 rules OK, 0 STUCK" in cleared, drill


def test_the_report_figures_are_the_journals_counts(demo):
    _, run, report, _ = demo
    data = json.loads((report / "report.json").read_text())
    per_state = dict(_journal(run, "SELECT state, COUNT(*) FROM files GROUP BY state"))
    assert per_state == {"done": 180}
    assert {k: v for k, v in data["files"].items() if v and k != "total"} == per_state
    assert data["files"]["total"] == sum(per_state.values())
    assert data["bytes"]["done"] == _journal(run, "SELECT SUM(bytes) FROM files WHERE state = 'done'")[0][0]
    per_dataset = dict(_journal(run, "SELECT dataset, COUNT(*) FROM files WHERE state = 'done' GROUP BY dataset"))
    assert {d["name"]: d["files"]["done"] for d in data["datasets"]} == per_dataset
    assert sum(data["throughput"]["phases"]["upload"]["files"]) == pytest.approx(180)
    assert data["progress"]["done"]["files"][-1] == 180
    assert data["headline"].startswith("180 of 180 files done")


def test_the_reports_retrieval_is_the_retrieve_journals_counts(demo):
    _, _, report, retrieve = demo
    data = json.loads((report / "report.json").read_text())
    (retrieval,) = data["retrievals"]
    per_state = dict(_journal(retrieve, "SELECT state, COUNT(*) FROM files GROUP BY state", "retrieve.sqlite"))
    assert per_state == {"done": 60}
    assert {k: v for k, v in retrieval["files"].items() if v and k != "total"} == per_state
    assert sum(data["throughput"]["phases"]["retrieval"]["files"]) == pytest.approx(60)
    assert data["headline"].endswith("60 retrieved and verified")


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (make deps installs it: APT_PACKAGES)")
def test_the_demo_report_opens_in_headless_chromium_without_errors(demo, tmp_path):
    _, _, report, _ = demo
    data = json.loads((report / "report.json").read_text())
    page_errors, shot_size, dom = open_in_chromium(report / "index.html", tmp_path, 3000)
    assert page_errors == []
    assert shot_size > 50_000  # a page with its figures, not a blank one
    assert data["headline"] in dom and "<h2>Retrieval</h2>" in dom
    images = re.findall(r'<img[^>]*src="([^"]*)"', dom)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
