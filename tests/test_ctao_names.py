"""CTAO's names (its Rucio policy: /<vo>/<scope>/<path>, at most 250 characters), checked before
anything is written: in a spec at plan time, in a directory source as it is walked."""

from __future__ import annotations

import json

import pytest

from conftest import nightlake
from nightlake import BadInput
from nightlake.night import names
from nightlake.night.plan import Plan
from nightlake.night.sources import from_directory
from nightlake.night.spec import load_spec

SPEC = """
[night]
site = "CTAO-North"
date = 2026-03-14
scope = "acada"
telescopes = ["LSTN-01", "LSTN-02"]

[datasets]
count = 2
files = 4

[sizes]
kind = "fixed"
size = "10 kB"

[naming]
vo = "ctao"
{extra}
"""


def spec(tmp_path, extra: str = ""):
    path = tmp_path / "night.toml"
    path.write_text(SPEC.format(extra=extra))
    return path


def test_a_spec_with_a_vo_names_its_files_by_their_path(tmp_path):
    plan = Plan(load_spec(spec(tmp_path)))
    files = list(plan.files())
    assert files[0].dataset == "/ctao/acada/DL0/CTAO-North/events/2026/03/14/obs000001_run000001"
    assert files[0].name == f"{files[0].dataset}/CTAO-North_20260314_LSTN-01_obs000001_run000001_0000.fits"
    assert all(names.name_problem(f.name, "acada", absolute=True) is None for f in files)
    assert names.containers(files[0].dataset)[:3] == ["/ctao", "/ctao/acada", "/ctao/acada/DL0"]
    assert [names.scope_of(c) for c in names.containers(files[0].dataset)[:2]] == ["root", "acada"]


def test_a_name_over_the_policy_limit_is_refused_at_plan_time_with_exit_2(tmp_path):
    long = spec(tmp_path, 'file = "{telescope}_{obs_id:0200d}_{subrun}.fits"')
    result = nightlake("plan", str(long), check=False)
    assert result.returncode == 2
    assert "longer than Rucio's 250 characters" in result.stderr and len(result.stderr.splitlines()) == 1
    run = tmp_path / "run"
    result = nightlake("ingest", str(long), "--rse", "ONSITE", "--run", str(run), check=False)
    assert result.returncode == 2 and not run.exists()


def test_a_spec_scope_the_policy_would_not_give_its_names_is_refused(tmp_path):
    path = spec(tmp_path, 'dataset = "../x/obs{obs_id}"')
    with pytest.raises(BadInput, match="'..' path segment"):
        load_spec(path)


def test_a_directory_with_a_vo_gives_each_file_its_path_and_its_directory_as_dataset(tmp_path):
    night = tmp_path / "acada"
    (night / "DL0" / "LSTN-01").mkdir(parents=True)
    (night / "DL0" / "LSTN-01" / "a.fits").write_bytes(b"x")
    [record] = from_directory(night, "acada", vo="ctao")
    assert (record.name, record.dataset) == ("/ctao/acada/DL0/LSTN-01/a.fits", "/ctao/acada/DL0/LSTN-01")


def test_a_directory_name_over_the_limit_or_a_file_at_the_top_is_refused(tmp_path):
    night = tmp_path / "acada"
    deep = night / ("d" * 240)
    deep.mkdir(parents=True)
    (deep / "a.fits").write_bytes(b"x")
    with pytest.raises(BadInput, match="longer than Rucio's 250"):
        list(from_directory(night, "acada", vo="ctao"))
    (night / "top.fits").write_bytes(b"x")
    with pytest.raises(BadInput, match="sub-directories"):
        list(from_directory(night, "acada", vo="ctao"))


def test_a_sub_tree_of_the_scope_directory_keeps_its_names_from_the_vo_on(tmp_path):
    day = tmp_path / "rse" / "ctao" / "acada" / "DL0" / "LSTN-01" / "2026"
    day.mkdir(parents=True)
    (day / "a.fits").write_bytes(b"x")
    [record] = from_directory(tmp_path / "rse" / "ctao" / "acada" / "DL0" / "LSTN-01", "acada", vo="ctao")
    assert (record.name, record.dataset) == ("/ctao/acada/DL0/LSTN-01/2026/a.fits", "/ctao/acada/DL0/LSTN-01/2026")
    [record] = from_directory(day, "acada", vo="ctao")  # files at the top of a deeper directory are fine
    assert record.dataset == "/ctao/acada/DL0/LSTN-01/2026"


def test_the_plan_counts_the_container_calls(tmp_path):
    result = nightlake("plan", str(spec(tmp_path)), "--json")
    calls = json.loads(result.stdout)["rucio_calls"]
    # datasets and containers: looked up and created once each; files, datasets and containers attached
    assert (calls["get_metadata_bulk"], calls["add_dids"], calls["attach_dids"]) == (2, 2, 3)
