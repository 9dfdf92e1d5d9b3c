"""Campaigns without a lake: the document and its one-line refusals, the scaled spec, the
campaign directory's identity, and the campaign report on synthetic phase runs (opened in
headless Chromium as the single-run report is)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from conftest import CHROMIUM, open_in_chromium
from nightlake import BadInput
from nightlake.lake.faults import LakeFaults
from nightlake.lake.layout import Layout
from nightlake.night.campaign import Scale, load_campaign, scaled_spec, to_toml
from nightlake.night.spec import load_spec, parse_spec
from nightlake.observe.report.campaign import (
    collect_campaign,
    ingest_seconds,
    write_campaign_report,
)
from nightlake.runs.campaign import CampaignDir
from nightlake.runs.journal.ingest import IngestJournal
from test_report import make_run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHASE = """
[[phases]]
name = "{name}"
source = "{source}"
rse = "{rse}"
{extra}
"""


def write_campaign(path: Path, *phases: dict) -> Path:
    text = '[campaign]\nname = "test"\n' + "".join(
        PHASE.format(**{"rse": "ONSITE", "extra": "", **p}) for p in phases)
    path.write_text(text)
    return path


def test_the_dr_2020_example_is_three_phases_each_scaled_to_a_few_files():
    campaign = load_campaign(EXAMPLES / "dr-2020.toml")
    assert [p.rse for p in campaign.phases] == ["ONSITE", "OFFSITE-B", "ONSITE"]
    assert campaign.phases[0].fault == "slow"
    for phase in campaign.phases:
        spec, text = scaled_spec(campaign.source(phase), phase.scale)
        assert text is not None and spec.datasets.count * spec.datasets.files.max <= 100
        assert [r.rse_expression for r in spec.rules] == ["OFFSITE-A"]


def test_a_scaled_spec_is_written_as_toml_that_reads_back_the_same():
    spec, text = scaled_spec(EXAMPLES / "dr-phase3.toml", Scale(files=4, sizes=0.05))
    assert (spec.datasets.files.max, spec.sizes.size) == (4, 100_000_000)
    assert parse_spec(tomllib.loads(text)) == spec
    original = load_spec(EXAMPLES / "dr-phase1.toml")
    assert parse_spec(tomllib.loads(to_toml(original.model_dump(exclude_none=True)))) == original


@pytest.mark.parametrize("phases, message", [
    ([{"name": "a", "source": "nowhere.toml"}], "phase a: "),
    ([{"name": "a", "source": "night.toml"}, {"name": "a", "source": "night.toml"}], "two phases are named 'a'"),
    ([{"name": "a", "source": "night.toml", "extra": "colour = 1"}], "phases.1 (a).colour: unknown field"),
    ([{"name": "a", "source": "night.toml", "extra": "scale = { sizes = 2 }"}], "phases.1 (a).scale.sizes"),
    ([{"name": "a", "source": "files", "extra": 'scope = "cta"\nscale = { files = 2 }'}],
     "phase a: scale applies to a night spec"),
    ([{"name": "a", "source": "files"}], "phase a: a directory source needs scope"),
])
def test_a_bad_phase_is_refused_in_one_line_naming_it(tmp_path, phases, message):
    (tmp_path / "night.toml").write_text((EXAMPLES / "dr-phase3.toml").read_text())
    (tmp_path / "files").mkdir()
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        load_campaign(write_campaign(tmp_path / "c.toml", *phases))
    assert "\n" not in str(refused.value)


def test_a_phase_spec_that_scaling_makes_invalid_is_refused(tmp_path):
    (tmp_path / "night.toml").write_text((EXAMPLES / "dr-phase3.toml").read_text())
    path = write_campaign(tmp_path / "c.toml", {"name": "a", "source": "night.toml",
                                                "extra": "scale = { files = 100000, datasets = 1000 }"})
    with pytest.raises(BadInput, match="phase a: .*at most"):
        load_campaign(path)


def test_a_fault_is_refused_unless_the_catalog_is_the_local_lakes(tmp_path):
    layout = Layout.load_or_new(tmp_path / "lake", 31900)
    with pytest.raises(BadInput, match="needs the local lake"):
        LakeFaults(layout, layout.rucio_url).check("ONSITE", "slow")
    layout.save()
    with pytest.raises(BadInput, match="only on the local lake: the Rucio server in use is https://rucio.example"):
        LakeFaults(layout, "https://rucio.example:443").check("ONSITE", "slow")
    with pytest.raises(BadInput, match="unknown fault 'sluggish'; choose one of down, readonly"):
        LakeFaults(layout, layout.rucio_url).check("ONSITE", "sluggish")
    with pytest.raises(BadInput, match="unknown RSE 'NOWHERE'"):
        LakeFaults(layout, layout.rucio_url).check("NOWHERE", "slow")
    LakeFaults(layout, layout.rucio_url).check("ONSITE", "slow")


def test_a_campaign_directory_holds_one_campaign(tmp_path):
    directory = CampaignDir(tmp_path / "c")
    description = {"name": "x", "phases": [{"name": "a", "source": "/s.toml", "rse": "ONSITE", "scope": None,
                                            "scale": None, "watch": 10}]}
    directory.open(description)
    directory.open({**description, "phases": [{**description["phases"][0], "watch": 20}]})  # the same campaign
    with pytest.raises(BadInput, match="holds another campaign \\(phase a rse: 'ONSITE', now 'OFFSITE-A'\\)"):
        directory.open({**description, "phases": [{**description["phases"][0], "rse": "OFFSITE-A"}]})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(BadInput, match="not empty and holds no campaign"):
        CampaignDir(tmp_path / "other").open(description)


def test_ingest_time_counts_sessions_not_the_pause_of_a_kill():
    events = [{"ts": 0, "kind": "run.start"}, {"ts": 5, "kind": "upload.batch"},  # killed at 5 s
              {"ts": 100, "kind": "run.start"}, {"ts": 108, "kind": "run.end"},
              {"ts": 150, "kind": "rules.progress"}]
    assert ingest_seconds(events) == 13


# --- the report ------------------------------------------------------------------------------------

NAMES = ("phase1-slow", "phase2-small", "phase3-large")


@pytest.fixture
def campaign(tmp_path):
    """Three synthetic phases, 100 s apart, as `nightlake campaign` lays them out."""
    directory = CampaignDir(tmp_path / "campaign")
    directory.open({"name": "dr-test", "description": "three phases", "phases": [
        {"name": n, "source": f"/data/{n}.toml", "rse": rse, "scope": None, "scale": None, "fault": fault}
        for n, rse, fault in zip(NAMES, ("ONSITE", "OFFSITE-B", "ONSITE"), ("slow", None, None))]})
    for index, name in enumerate(NAMES):
        run = make_run(directory.phase_run(index, name).path, datasets=index + 1, files=10 * (index + 1))
        shifted = [{**e, "ts": e["ts"] + 100 * index} for e in map(json.loads, run.joinpath("events.jsonl").open())]
        run.joinpath("events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in shifted))
    directory.save_state({"phases": {n: {"state": "finished"} for n in NAMES}, "fault": None})
    return directory


def test_the_campaign_report_counts_are_each_phase_journals(campaign, tmp_path):
    data = write_campaign_report(campaign.path, tmp_path / "report")
    assert [p["name"] for p in data["phases"]] == list(NAMES)
    for index, phase in enumerate(data["phases"]):
        with IngestJournal.open(campaign.phase_run(index, phase["name"]).journal()) as journal:
            counts = journal.counts()
        assert {s.value: n for s, n in counts.items()} == {k: v for k, v in phase["files"].items() if k != "total"}
        assert phase["files"]["total"] == sum(counts.values())
        assert phase["span"]["first"] == pytest.approx(data["span"]["first"] + 100 * index)
    rows = (tmp_path / "report" / "phases.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].startswith("phase1-slow,finished,ONSITE,slow,")
    assert data["headline"].startswith("3 of 3 phases finished")


def test_a_phase_not_started_yet_is_shown_as_such(campaign, tmp_path):
    import shutil

    shutil.rmtree(campaign.phase_run(2, NAMES[2]).path)
    data = collect_campaign(campaign.path)
    assert data["phases"][2]["state"] == "not started" and data["headline"].startswith("2 of 3 phases finished")


def test_status_of_a_campaign_is_each_phases_journal(campaign):
    import shutil

    from click.testing import CliRunner

    from nightlake.cli import cli

    shutil.rmtree(campaign.phase_run(2, NAMES[2]).path)
    result = CliRunner().invoke(cli, ["status", str(campaign.path), "--json"])
    assert result.exit_code == 0, result.output
    phases = json.loads(result.output)["phases"]
    assert [(p["phase"], p["state"], p["rse"]) for p in phases] == \
        [(NAMES[0], "finished", "ONSITE"), (NAMES[1], "finished", "OFFSITE-B"), (NAMES[2], "finished", "ONSITE")]
    for index, phase in enumerate(phases[:2]):
        with IngestJournal.open(campaign.phase_run(index, NAMES[index]).journal()) as journal:
            assert phase["files"]["total"] == sum(journal.counts().values())
    assert phases[2]["files"] is None  # its run directory is gone: no journal to count
    table = CliRunner().invoke(cli, ["status", str(campaign.path)])
    assert table.exit_code == 0 and "campaign of 3 phases" in table.output and NAMES[1] in table.output


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (make deps installs it: APT_PACKAGES)")
def test_the_campaign_report_opens_in_headless_chromium_with_one_timeline_of_three_phases(campaign, tmp_path):
    out = tmp_path / "report"
    data = write_campaign_report(campaign.path, out)
    page_errors, shot_size, dom = open_in_chromium(out / "index.html", tmp_path, 2000)
    assert page_errors == []
    assert shot_size > 50_000  # a rendered page with its figure, not a blank one
    assert data["headline"] in dom
    assert dom.count("<img") == 1 and "timeline of 3 phases: phase1-slow, phase2-small, phase3-large" in dom
    assert all(dom.count(name) >= 3 for name in NAMES)  # the slide, the errors, the provenance
