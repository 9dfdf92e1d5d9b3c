"""The report of a real ingest into the lake: its headline agrees with the run's own summary."""

from __future__ import annotations

import json

import pytest

from ingest_helpers import nightlake, summary, write_spec
from nightlake.lake.layout import RSES

pytestmark = pytest.mark.lake


def test_report_of_a_real_ingest_matches_its_summary(lake, scratch):
    spec = write_spec(scratch / "night.toml", "REPORTTEST", datasets=2, files=10,
                      rules=f'[[rules]]\nrse_expression = "{RSES[1].name}"')
    run, out = scratch / "run", scratch / "report"
    ingest = nightlake("ingest", str(spec), "--rse", RSES[0].name, "--run", str(run), "--quiet")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    result = nightlake("report", str(run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "report.json").read_text())
    assert data["files"] == summary(run)["files"]
    assert data["headline"].startswith("20 of 20 files done") and "2 of 2 datasets closed, 2 rules" in data["headline"]
    assert data["run"]["versions"]["rucio_server"] and data["run"]["rses"] == [RSES[0].name]
    assert sum(data["throughput"]["phases"]["upload"]["files"]) == pytest.approx(20)
