"""The plan: pure data whose numbers add up to the spec, the same on every run."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nightlake.cli import cli
from nightlake.night.plan import (
    HISTOGRAM_EDGES,
    RUCIO_BATCH_SIZE,
    Plan,
    batched,
    night_time,
    required_rates,
    rucio_calls,
    summarize,
)
from nightlake.night.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
[night]
site = "CTAO-South"
date = 2026-03-14
seed = 7
telescopes = ["MST-01", "MST-02", "SST-01"]

[datasets]
count = 4
files = { min = 5, max = 40 }

[sizes]
kind = "log-normal"
median = "200 kB"
sigma = 0.8
min = "10 kB"
max = "2 MB"

[[rules]]
copies = 2
rse_expression = "OFFSITE-A|OFFSITE-B"
lifetime = 86400
"""


def small(**night) -> Plan:
    import tomllib
    raw = tomllib.loads(SMALL)
    raw["night"].update(night)
    return Plan(parse_spec(raw))


def test_cta_night_preset_is_500k_files_and_5_5_tb():
    summary = summarize(Plan(load_spec(ROOT / "examples" / "cta-night.toml")))
    assert summary.n_files == 500_000
    assert abs(summary.n_bytes - 5.5e12) <= 0.01 * 5.5e12


def test_phase3_preset_is_20_files_of_2_gb():
    summary = summarize(Plan(load_spec(ROOT / "examples" / "dr-phase3.toml")))
    assert summary.n_files == 20 and summary.min_size == summary.max_size
    assert abs(summary.max_size - 2e9) < 2880


def test_demo_preset_is_a_few_hundred_mb():
    summary = summarize(Plan(load_spec(ROOT / "examples" / "demo.toml")))
    assert 100 <= summary.n_files <= 300 and 100e6 <= summary.n_bytes <= 500e6


def test_json_numbers_add_up_to_the_spec():
    result = CliRunner().invoke(cli, ["plan", "--json", str(ROOT / "examples" / "dr-phase2.toml")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    spec = load_spec(ROOT / "examples" / "dr-phase2.toml")
    assert doc["datasets"] == spec.datasets.count == len(doc["per_dataset"])
    assert doc["files"] == sum(d["files"] for d in doc["per_dataset"]) == sum(b["files"] for b in doc["histogram"])
    assert doc["bytes"] == sum(d["bytes"] for d in doc["per_dataset"])
    assert all(5 <= d["files"] <= 2000 for d in doc["per_dataset"])
    assert spec.sizes.min <= doc["file_size"]["min"] and doc["file_size"]["max"] <= spec.sizes.max + 2880
    calls = doc["rucio_calls"]
    assert calls["add_replicas"] == calls["set_dids_metadata_bulk"] == -(-doc["files"] // 1000)
    assert calls["close"] == doc["datasets"] and calls["add_dids"] == 1


def test_file_iteration_matches_the_summary():
    plan = small()
    summary = summarize(plan)
    files = list(plan.files())
    assert len(files) == summary.n_files and sum(f.size for f in files) == summary.n_bytes
    assert len({f.name for f in files}) == len(files)
    assert {f.dataset for f in files} == {name for name, _, _ in summary.datasets}


def test_written_sizes_are_whole_fits_blocks_within_bounds():
    for f in small().files():
        assert f.size % 2880 == 0 and f.size >= 2 * 2880
        assert 10_000 <= f.size < 2_000_000 + 2880


def test_files_carry_rucio_friendly_metadata():
    f = next(small().files())
    assert f.scope == "cta" and f.did == f"cta:{f.name}" and f.name.endswith(".fits")
    assert set(f.meta) == {"site", "night", "origin", "telescope", "tel_id", "obs_id", "run", "subrun",
                           "date_obs", "date_end", "data_level"}
    assert f.meta["date_obs"] == "2026-03-14T20:00:00.000" and f.meta["telescope"] == "MST-01"
    assert f.meta["date_obs"] < f.meta["date_end"]


def test_telescopes_take_turns_within_a_subrun():
    files = list(small().files())[:6]
    assert [(f.meta["tel_id"], f.meta["subrun"]) for f in files] == [(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (3, 1)]


def test_same_seed_same_plan_other_seed_other_plan():
    first = [(f.name, f.size, f.payload_seed) for f in small().files()]
    assert first == [(f.name, f.size, f.payload_seed) for f in small().files()]
    assert first != [(f.name, f.size, f.payload_seed) for f in small(seed=8).files()]


def test_total_bytes_cap_stops_the_night_at_the_last_file_that_fits():
    full = list(small().files())
    cap = sum(f.size for f in full[:37]) + 1
    capped = list(small(total_bytes=cap).files())
    assert [f.name for f in capped] == [f.name for f in full[:37]]
    assert summarize(small(total_bytes=cap)).n_bytes <= cap


def test_histogram_counts_every_file_in_its_bin():
    plan = small()
    summary = summarize(plan)
    sizes = [f.size for f in plan.files()]
    for i, count in enumerate(summary.histogram):
        assert count == sum(HISTOGRAM_EDGES[i] <= s < HISTOGRAM_EDGES[i + 1] for s in sizes)


def test_rucio_calls_chunk_each_dataset_at_the_batch_limit():
    assert RUCIO_BATCH_SIZE == 1000
    calls = rucio_calls([1000, 1001, 1], n_rules=2)  # files 0-999 | 1000-2000 | 2001: batches 0, 1, 2
    assert calls == {"get_metadata_bulk": 1, "add_dids": 1, "list_replicas": 3, "add_replicas": 3,
                     "attach_dids": 4, "set_dids_metadata_bulk": 3, "list_did_rules": 6,
                     "add_replication_rule": 6, "close": 3}


def test_batched_yields_chunks_of_at_most_the_batch_size():
    assert [len(c) for c in batched(range(2501))] == [1000, 1000, 501]


def test_ten_hour_night_needs_14_files_and_153_mb_per_second():
    need = required_rates(500_000, 5.5e12)
    assert need["files_per_s"] == pytest.approx(13.89, abs=0.01)
    assert need["mb_per_s"] == pytest.approx(152.8, abs=0.1)


def test_night_time_is_set_by_the_slower_rate():
    t = night_time(500_000, 5.5e12, files_per_s=100, mb_per_s=100)
    assert t["limited_by"] == "MB/s" and t["seconds"] == pytest.approx(55_000) and not t["within_night"]


def test_plan_prints_a_human_summary():
    result = CliRunner().invoke(cli, ["plan", str(ROOT / "examples" / "demo.toml"), "--files-per-s", "5"])
    assert result.exit_code == 0, result.output
    for text in ("180", "add_replicas", "OFFSITE-A", "Needed to finish within 10 h"):
        assert text in result.output
