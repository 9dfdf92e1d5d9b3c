"""The catalog is the truth when the journal is lost: the same ingest into a new run directory
converges (exit 0, no new upload, no rule twice); a closed dataset that holds other files than the
plan is refused with one line. Checked with the stock client and on the storage itself."""

from __future__ import annotations

import json
import shutil

import pytest

from ingest_helpers import nightlake, stored_files, summary, write_spec
from nightlake.lake.layout import RSES

pytestmark = pytest.mark.lake
ONSITE = RSES[0]
RULE = '[[rules]]\nrse_expression = "ONSITE"'


def _events(run) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _mtimes(lake, site: str) -> dict[str, int]:
    root = lake.rse_data(ONSITE) / "rucio"
    return {p: (root / p).stat().st_mtime_ns for p in stored_files(lake, ONSITE) if site in p}


@pytest.mark.parametrize("close", [True, False], ids=["closed-datasets", "open-datasets"])
def test_the_same_ingest_into_a_new_run_directory_converges_without_uploading(lake, scratch, close):
    from rucio.client import Client

    site = f"LOST{int(close)}"
    spec = write_spec(scratch / "night.toml", site, datasets=2, files=150, size="10 kB", rules=RULE)
    args = ["ingest", str(spec), "--rse", ONSITE.name, "--quiet", *([] if close else ["--no-close"])]
    first = nightlake(*args, "--run", str(scratch / "run"))
    assert first.returncode == 0, first.stderr
    before = _mtimes(lake, site)
    shutil.rmtree(scratch / "run")  # the journal is lost

    again = nightlake(*args, "--run", str(scratch / "new-run"))
    assert again.returncode == 0, again.stderr
    result = summary(scratch / "new-run")
    assert (result["files"]["done"], result["files"]["failed"]) == (300, 0)
    assert not [e for e in _events(scratch / "new-run") if e["kind"] == "upload.batch"], "files were uploaded again"
    assert _mtimes(lake, site) == before  # the storage was not written
    client = Client()
    for rule in result["rules"]:
        rules = list(client.list_did_rules(rule["scope"], rule["dataset"]))
        assert [r["id"] for r in rules] == [rule["rule_id"]]  # the earlier rule, not a second one


def test_a_closed_dataset_holding_other_files_than_the_plan_is_refused_in_one_line(lake, scratch):
    spec = write_spec(scratch / "night.toml", "LOSTBIG", datasets=1, files=20)
    assert nightlake("ingest", str(spec), "--rse", ONSITE.name, "--quiet", "--run", str(scratch / "a")).returncode == 0
    bigger = write_spec(scratch / "bigger.toml", "LOSTBIG", datasets=1, files=30)  # same dataset, more files
    refused = nightlake("ingest", str(bigger), "--rse", ONSITE.name, "--quiet", "--run", str(scratch / "b"))
    assert refused.returncode == 2
    line, = refused.stderr.strip().splitlines()
    assert "exists and is closed, and holds other files than this run plans: missing 10" in line
