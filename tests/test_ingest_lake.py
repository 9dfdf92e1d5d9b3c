"""Ingest against the real lake, checked with the stock rucio CLI: every file lands once, with
its size, adler32 and metadata, from a directory, from a streamed spec, or in place."""

from __future__ import annotations

import json
import re

import pytest

from ingest_helpers import adler32, nightlake, place_on_storage, rucio, stored_files, summary, write_spec
from nightlake.generate import generate
from nightlake.lake.layout import RSES
from nightlake.plan import Plan
from nightlake.spec import load_spec

pytestmark = pytest.mark.lake
ONSITE = RSES[0]


def _replicas(dataset: str) -> dict[str, tuple[int, str]]:
    """{name: (bytes, adler32)} of a dataset's files, as the stock client's bulk listing shows them."""
    from rucio.client import Client

    files = Client().list_files("cta", dataset)
    return {f["name"]: (f["bytes"], f["adler32"]) for f in files}


def _dids_with(key: str, value: str) -> set[str]:
    """Files matching a metadata filter, through the stock `rucio did list --filter`."""
    out = rucio("did", "list", "cta:*", "--short", "--filter", f"{key}={value}")
    return {line.split(":", 1)[1] for line in out.split() if line.startswith("cta:")}


@pytest.fixture(scope="module")
def generated_night(lake, tmp_path_factory):
    """2,000 generated FITS files in two datasets, ingested from their directory."""
    work = tmp_path_factory.mktemp("dirnight")
    spec = load_spec(write_spec(work / "night.toml", "DIRTEST", datasets=2, files=1000))
    generate(Plan(spec).files(), work / "files")
    run = work / "run"
    result = nightlake("ingest", str(work / "files"), "--rse", ONSITE.name, "--scope", "cta", "--run", str(run),
                       "--rule", ONSITE.name, "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    return work, spec, run, result


def test_directory_ingest_registers_every_file_with_size_and_adler32(generated_night):
    work, spec, run, _ = generated_night
    for dataset in (work / "files").iterdir():
        listed = _replicas(dataset.name)
        local = {p.name: (p.stat().st_size, adler32(p.read_bytes())) for p in dataset.iterdir()}
        assert listed == local
    assert summary(run)["files"]["done"] == 2000


def test_stock_rucio_download_of_a_sample_verifies(generated_night, scratch):
    work, *_ = generated_night
    sample = sorted((work / "files").rglob("*.fits"))[::500]
    for path in sample:
        rucio("download", "--dir", str(scratch), f"cta:{path.name}")
        assert (scratch / "cta" / path.name).read_bytes() == path.read_bytes()


def test_metadata_filter_returns_exactly_the_expected_files(generated_night):
    work, spec, *_ = generated_night
    expected = {f.name for f in Plan(spec).files() if f.meta["telescope"] == "LST-2"}
    assert len(expected) == 1000
    assert _dids_with("telescope", "LST-2") & {f.name for f in Plan(spec).files()} == expected


def test_datasets_are_closed_and_ruled(generated_night):
    from rucio.client import Client

    client = Client()
    _, spec, run, _ = generated_night
    for dataset in Plan(spec).datasets():
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


def test_streamed_spec_ingest_needs_no_local_files(lake, scratch):
    from rucio.client import Client

    spec_path = write_spec(scratch / "night.toml", "STREAMTEST", datasets=2, files=40, size="300 kB",
                           rules='[[rules]]\nrse_expression = "ONSITE"')
    run = scratch / "run"
    result = nightlake("ingest", str(spec_path), "--rse", ONSITE.name, "--run", str(run), "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"]["done"] == 80
    from nightlake.payload import open_stream

    plan = Plan(load_spec(spec_path))
    for dataset in plan.datasets():
        listed = _replicas(dataset.name)
        expected = {f.name: (f.size, open_stream(f).adler32) for f in plan.dataset_files(dataset)}
        assert listed == expected
    sample = next(plan.files())
    rucio("download", "--dir", str(scratch / "dl"), sample.did)
    assert (scratch / "dl" / "cta" / sample.name).read_bytes() == b"".join(open_stream(sample).iter_chunks())
    assert [r["state"] for r in Client().list_did_rules("cta", next(plan.datasets()).name)] == ["OK"]


def test_in_place_registers_files_already_on_storage_without_copying(lake, scratch):
    from rucio.client import Client
    from rucio.rse import rsemanager

    spec = load_spec(write_spec(scratch / "night.toml", "INPLACE", datasets=1, files=20))
    generate(Plan(spec).files(), scratch / "files")
    info = rsemanager.get_rse_info(ONSITE.name)
    local = sorted((scratch / "files").rglob("*.fits"))
    pfns = rsemanager.lfns2pfns(info, [{"scope": "cta", "name": p.name} for p in local], operation="write",
                                scheme="https")
    for path in local:
        place_on_storage(lake, ONSITE, pfns[f"cta:{path.name}"], path)
    result = nightlake("ingest", str(scratch / "files"), "--rse", ONSITE.name, "--scope", "cta", "--in-place",
                       "--run", str(scratch / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    dataset = local[0].parent.name
    assert _replicas(dataset) == {p.name: (p.stat().st_size, adler32(p.read_bytes())) for p in local}
    replica = next(Client().list_replicas([{"scope": "cta", "name": local[0].name}]))
    assert replica["states"][ONSITE.name] == "AVAILABLE"


def test_in_place_refuses_a_file_that_is_not_on_storage(lake, scratch):
    spec = load_spec(write_spec(scratch / "night.toml", "INPLACEMISSING", datasets=1, files=3))
    generate(Plan(spec).files(), scratch / "files")
    result = nightlake("ingest", str(scratch / "files"), "--rse", ONSITE.name, "--scope", "cta", "--in-place",
                       "--run", str(scratch / "run"), "--quiet")
    assert result.returncode == 1
    problems = summary(scratch / "run")["problems"]
    assert len(problems) == 3 and all("not on ONSITE" in p["message"] for p in problems)


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
    assert _replicas("qds") == {"QUAR_0.dat": (100, adler32(b"x" * 100))}


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
    sample = next(Plan(load_spec(spec_path)).files())
    rucio("download", "--dir", str(scratch / "dl"), sample.did)
    from nightlake.payload import open_stream

    assert (scratch / "dl" / "cta" / sample.name).read_bytes() == b"".join(open_stream(sample).iter_chunks())


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
