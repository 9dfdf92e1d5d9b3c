"""Ingest against the real lake, checked with the stock rucio CLI: every file lands once, with
its size, adler32 and metadata, from a directory, from a streamed spec, or in place."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from ingest_helpers import (
    Expected,
    adler32,
    assert_cli_downloads,
    assert_cli_filter,
    assert_cli_lists,
    dids,
    listed_by_cli,
    nightlake,
    on_disk,
    place_on_storage,
    sample,
    stored_files,
    streamed,
    summary,
    write_spec,
)
from nightlake.flows.generate import file_path, generate
from nightlake.lake.layout import RSES
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec

pytestmark = pytest.mark.lake
ONSITE = RSES[0]


class Night(NamedTuple):
    """An ingested night: its work directory, plan and run, and the files it must have put in the lake."""

    work: Path
    plan: Plan
    run: Path
    files: list[Expected]


def _pfns(names: list[str]) -> dict[str, str]:
    """Where Rucio puts each name on ONSITE (https), i.e. where an in-place file must already be."""
    from rucio.rse import rsemanager

    info = rsemanager.get_rse_info(ONSITE.name)
    return rsemanager.lfns2pfns(info, [{"scope": "cta", "name": n} for n in names], operation="write", scheme="https")


def _generate_on_storage(lake, work: Path, site: str, datasets: int, files: int) -> tuple[Plan, dict[str, Path]]:
    """A generated night under work/files, each file also copied to where Rucio expects it on ONSITE."""
    plan = Plan(load_spec(write_spec(work / "night.toml", site, datasets=datasets, files=files)))
    generate(plan.files(), work / "files")
    local = {f.name: file_path(work / "files", f) for f in plan.files()}
    pfns = _pfns(list(local))
    return plan, {name: place_on_storage(lake, ONSITE, pfns[f"cta:{name}"], path) for name, path in local.items()}


def _ingest_in_place(work: Path) -> subprocess.CompletedProcess:
    return nightlake("ingest", str(work / "files"), "--rse", ONSITE.name, "--scope", "cta", "--in-place",
                     "--run", str(work / "run"), "--quiet")


@pytest.fixture(scope="module")
def generated_night(lake, tmp_path_factory) -> Night:
    """2,000 generated FITS files in two datasets, ingested from their directory."""
    work = tmp_path_factory.mktemp("dirnight")
    plan = Plan(load_spec(write_spec(work / "night.toml", "DIRTEST", datasets=2, files=1000)))
    generate(plan.files(), work / "files")
    run = work / "run"
    result = nightlake("ingest", str(work / "files"), "--rse", ONSITE.name, "--scope", "cta", "--run", str(run),
                       "--rule", ONSITE.name, "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(run)["files"]["done"] == 2000
    return Night(work, plan, run, on_disk(plan, work / "files"))


@pytest.fixture(scope="module")
def streamed_night(lake, tmp_path_factory) -> Night:
    """2,000 files in two datasets ingested straight from their spec: payloads streamed, no file on
    local disk."""
    work = tmp_path_factory.mktemp("streamnight")
    spec_path = write_spec(work / "night.toml", "STREAMTEST", datasets=2, files=1000, size="20 kB",
                           rules='[[rules]]\nrse_expression = "ONSITE"')
    run = work / "run"
    result = nightlake("ingest", str(spec_path), "--rse", ONSITE.name, "--run", str(run), "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"]["done"] == 2000
    assert sorted(p.name for p in work.iterdir()) == ["night.toml", "run"]
    plan = Plan(load_spec(spec_path))
    return Night(work, plan, run, streamed(plan))


@pytest.fixture(scope="module")
def in_place_night(lake, tmp_path_factory) -> Night:
    """2,000 generated files in two datasets, already on ONSITE where Rucio expects them, ingested
    with --in-place, which must leave every stored file as it was (same mtime: nothing copied)."""
    work = tmp_path_factory.mktemp("inplacenight")
    plan, stored = _generate_on_storage(lake, work, "INPLACE", datasets=2, files=1000)
    mtimes = {name: path.stat().st_mtime_ns for name, path in stored.items()}
    result = _ingest_in_place(work)
    assert result.returncode == 0, result.stderr
    assert {name: path.stat().st_mtime_ns for name, path in stored.items()} == mtimes, "in place rewrote a file"
    return Night(work, plan, work / "run", on_disk(plan, work / "files"))


# The acceptance checks, for each way of ingesting a night (directory, streamed spec, in place).
@pytest.fixture(scope="module", params=["generated_night", "streamed_night", "in_place_night"])
def night(request) -> Night:
    return request.getfixturevalue(request.param)


def test_the_stock_cli_lists_every_file_with_its_size_and_adler32(night):
    assert_cli_lists(night.files, ONSITE.name)


def test_stock_rucio_download_of_a_sample_verifies(night, scratch):
    assert_cli_downloads(sample(night.files), scratch)


def test_a_metadata_filter_returns_exactly_the_expected_files(night):
    assert_cli_filter(night.files, "telescope", "LST-2")


def test_datasets_are_closed_and_ruled(generated_night):
    from rucio.client import Client

    client = Client()
    for dataset in generated_night.plan.datasets():
        assert client.get_did("cta", dataset.name)["open"] is False
        rules = list(client.list_did_rules("cta", dataset.name))
        assert [(r["rse_expression"], r["state"]) for r in rules] == [(ONSITE.name, "OK")]


def test_rerunning_a_finished_run_changes_nothing(generated_night, lake):
    work, _, run, _ = generated_night
    before = lake.access_log.read_text().count("\n")
    again = nightlake("ingest", str(work / "files"), "--rse", ONSITE.name, "--scope", "cta", "--run", str(run),
                      "--rule", ONSITE.name, "--quiet")
    assert again.returncode == 0, again.stderr
    calls = lake.access_log.read_text().splitlines()[before:]
    writes = [c for c in calls if re.search(r'"(POST|PUT|DELETE) ', c) and "/auth/" not in c]
    assert writes == [] or all("/replicas/list" in c for c in writes)
    assert summary(run)["files"]["done"] == 2000


def test_rest_calls_per_file_stay_below_two_percent(lake, scratch):
    spec = load_spec(write_spec(scratch / "night.toml", "CALLS", datasets=2, files=1000))
    generate(Plan(spec).files(), scratch / "files")
    before = lake.access_log.read_text().count("\n")
    result = nightlake("ingest", str(scratch / "files"), "--rse", ONSITE.name, "--scope", "cta",
                       "--run", str(scratch / "run"), "--rule", ONSITE.name, "--quiet")
    assert result.returncode == 0, result.stderr
    calls = lake.access_log.read_text().splitlines()[before:]
    assert len(calls) / 2000 <= 0.02, "\n".join(calls)


def test_a_streamed_spec_applies_its_own_rules(streamed_night):
    from rucio.client import Client

    for dataset in streamed_night.plan.datasets():
        assert [r["state"] for r in Client().list_did_rules("cta", dataset.name)] == ["OK"]


def test_in_place_refuses_a_file_that_is_not_on_storage(lake, scratch):
    spec = load_spec(write_spec(scratch / "night.toml", "INPLACEMISSING", datasets=1, files=3))
    generate(Plan(spec).files(), scratch / "files")
    result = _ingest_in_place(scratch)
    assert result.returncode == 1
    problems = summary(scratch / "run")["problems"]
    assert len(problems) == 3 and all("not on ONSITE" in p["message"] for p in problems)


@pytest.mark.parametrize("site, alter, reason", [
    ("INPLACEBYTES", lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), "adler32 mismatch"),
    ("INPLACESIZE", lambda data: data + b"\0", "not the same file"),
], ids=["same-size-other-bytes", "other-size"])
def test_in_place_refuses_a_file_that_differs_on_storage_from_its_source(lake, scratch, site, alter, reason):
    _, stored = _generate_on_storage(lake, scratch, site, datasets=1, files=3)
    altered = sorted(stored)[1]
    stored[altered].write_bytes(alter(stored[altered].read_bytes()))
    result = _ingest_in_place(scratch)
    assert result.returncode == 1, result.stderr
    problems = summary(scratch / "run")["problems"]
    assert [(p["did"], p["state"]) for p in problems] == [(f"cta:{altered}", "failed")]
    assert reason in problems[0]["message"] and altered in problems[0]["message"]
    assert dids("type=file", f"cta:{site}*") == set(stored) - {altered}


def test_bad_input_exits_2_with_one_line(scratch):
    result = nightlake("ingest", str(scratch / "missing"), "--rse", "ONSITE", "--scope", "cta",
                       "--run", str(scratch / "run"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "no such directory" in result.stderr


def test_unknown_rse_exits_2(lake, scratch):
    spec_path = write_spec(scratch / "night.toml", "NORSE", datasets=1, files=2)
    result = nightlake("ingest", str(spec_path), "--rse", "NOWHERE", "--run", str(scratch / "run"), "--quiet")
    assert result.returncode == 2 and "NOWHERE" in result.stderr


def test_files_missing_required_metadata_are_quarantined_with_the_reason(lake, scratch):
    files = scratch / "files" / "qds"
    files.mkdir(parents=True)
    for i in range(3):
        (files / f"QUAR_{i}.dat").write_bytes(b"x" * (100 + i))
    (files / "QUAR_0.dat.meta.json").write_text(json.dumps({"obs_id": 7}))
    result = nightlake("ingest", str(scratch / "files"), "--rse", ONSITE.name, "--scope", "cta",
                       "--require", "obs_id", "--run", str(scratch / "run"), "--quiet", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["files"]["done"], report["files"]["quarantined"]) == (1, 2)
    assert {p["message"] for p in report["problems"]} == {"missing required metadata: obs_id"}
    assert listed_by_cli("qds", ONSITE.name) == {"QUAR_0.dat": (100, adler32(b"x" * 100))}


def test_a_closed_dataset_is_refused_before_any_upload(lake, scratch):
    from rucio.client import Client

    client = Client()
    client.add_dataset("cta", "CLOSEDDS")
    client.close("cta", "CLOSEDDS")
    (scratch / "files" / "CLOSEDDS").mkdir(parents=True)
    (scratch / "files" / "CLOSEDDS" / "closedds_file.dat").write_bytes(b"data")
    result = nightlake("ingest", str(scratch / "files"), "--rse", ONSITE.name, "--scope", "cta",
                       "--run", str(scratch / "run"), "--quiet")
    assert result.returncode == 2 and "closed" in result.stderr
    assert not {p for p in stored_files(lake, ONSITE) if "closedds_file" in p}


def test_a_rule_expression_matching_no_rse_is_bad_input(lake, scratch):
    spec_path = write_spec(scratch / "night.toml", "BADRULE", datasets=1, files=2)
    result = nightlake("ingest", str(spec_path), "--rse", ONSITE.name, "--rule", "NO-SUCH-RSE",
                       "--run", str(scratch / "run"), "--quiet")
    assert result.returncode == 2 and "NO-SUCH-RSE" in result.stderr
    assert not {p for p in stored_files(lake, ONSITE) if "BADRULE" in p}


def test_root_scheme_ingest_lands_where_the_stock_client_reads(lake, scratch):
    spec_path = write_spec(scratch / "night.toml", "ROOTSCHEME", datasets=1, files=5, size="50 kB")
    run = scratch / "run"
    result = nightlake("ingest", str(spec_path), "--rse", ONSITE.name, "--scheme", "root", "--run", str(run),
                       "--quiet")
    assert result.returncode == 0, result.stderr
    assert_cli_downloads(streamed(Plan(load_spec(spec_path)))[:1], scratch / "dl")


def test_refused_credentials_stop_the_run_with_exit_2(lake, scratch):
    import os
    import subprocess

    from conftest import NIGHTLAKE

    config = lake.client_cfg.read_text()
    config = re.sub(r"(?m)^password = .*$", "password = wrong-password", config)
    config = re.sub(r"(?m)^auth_token_file_path = .*$", f"auth_token_file_path = {scratch}/token", config)
    (scratch / "rucio.cfg").write_text(config)
    spec_path = write_spec(scratch / "night.toml", "BADAUTH", datasets=1, files=2)
    result = subprocess.run([NIGHTLAKE, "ingest", str(spec_path), "--rse", ONSITE.name, "--run", str(scratch / "run"),
                             "--quiet"], capture_output=True, text=True,
                            env={**os.environ, "RUCIO_CONFIG": str(scratch / "rucio.cfg")})
    assert result.returncode == 2
    assert "authentication refused" in result.stderr and "wrong-password" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
