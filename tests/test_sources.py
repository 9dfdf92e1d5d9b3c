"""sources: a directory tree or a night spec, as the journal records an ingest starts from."""

import json
from pathlib import Path

import pytest

from nightlake import BadInput
from nightlake.flows.generate import write_file
from nightlake.night.payload import open_stream
from nightlake.night.plan import Plan, summarize
from nightlake.night.sources import (
    SourceFile,
    from_directory,
    from_spec,
    planned_file,
    required_missing,
)
from nightlake.night.spec import load_spec
from nightlake.runs.journal.ingest import FileState, IngestJournal

SPEC = """
[night]
site = "CTAO-North"
date = 2026-03-14
scope = "cta"
seed = 7
telescopes = ["LST-1", "LST-2"]

[datasets]
count = 2
files = { min = 2, max = 4 }

[sizes]
kind = "log-uniform"
min = "3 kB"
max = "30 kB"
"""


@pytest.fixture
def plan(tmp_path_factory) -> Plan:
    spec = tmp_path_factory.mktemp("spec") / "night.toml"
    spec.write_text(SPEC)
    return Plan(load_spec(spec))


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def by_name(records) -> dict[str, SourceFile]:
    return {r.name: r for r in records}


def test_each_subdirectory_is_a_dataset_and_root_files_join_root(tmp_path):
    root = tmp_path / "night1"
    for rel in ("top.dat", "obs1/a.dat", "obs1/run2/b.dat"):
        touch(root / rel)
    datasets = {r.name: r.dataset for r in from_directory(root, "cta")}
    assert datasets == {"top.dat": "night1", "a.dat": "obs1", "b.dat": "obs1.run2"}


def test_dataset_option_puts_every_file_in_that_dataset(tmp_path):
    for rel in ("top.dat", "obs1/a.dat", "obs2/b.dat"):
        touch(tmp_path / rel)
    assert {r.dataset for r in from_directory(tmp_path, "cta", dataset="all")} == {"all"}


def test_walk_order_is_sorted_with_a_directorys_files_first(tmp_path):
    for rel in ("b/2.dat", "b/1.dat", "a/z/3.dat", "a/4.dat", "0.dat"):
        touch(tmp_path / rel)
    assert [r.name for r in from_directory(tmp_path, "cta")] == ["0.dat", "4.dat", "3.dat", "1.dat", "2.dat"]


def test_record_has_absolute_source_size_and_no_checksum_yet(tmp_path):
    path = touch(tmp_path / "d" / "f.dat", "12345")
    (record,) = from_directory(tmp_path / "d" / ".." / "d", "cta")
    assert (record.source, record.bytes, record.adler32, record.scope) == (str(path.resolve()), 5, None, "cta")


def test_fits_header_gives_the_planned_metadata(plan, tmp_path):
    planned = next(plan.files())
    write_file(planned, tmp_path)
    (record,) = from_directory(tmp_path, "cta")
    assert record.meta == planned.meta and record.bytes == planned.size


def test_sidecar_keys_override_fits_keys(plan, tmp_path):
    planned = next(plan.files())
    write_file(planned, tmp_path)
    sidecar = tmp_path / planned.dataset / (planned.name + ".meta.json")
    sidecar.write_text(json.dumps({"telescope": "MST-01", "quality": "good"}))
    (record,) = from_directory(tmp_path, "cta")
    assert record.meta == {**planned.meta, "telescope": "MST-01", "quality": "good"}


def test_temporaries_hidden_entries_and_sidecars_are_skipped(tmp_path):
    for rel in ("keep.dat", "keep.dat.meta.json", "x.part", "y.nightlake-part", ".hidden", ".git/z.dat"):
        touch(tmp_path / rel, "{}")
    assert [r.name for r in from_directory(tmp_path, "cta")] == ["keep.dat"]


def test_duplicate_basename_is_bad_input_naming_both_paths(tmp_path):
    first, second = touch(tmp_path / "a" / "same.dat"), touch(tmp_path / "b" / "same.dat")
    with pytest.raises(BadInput) as err:
        list(from_directory(tmp_path, "cta"))
    assert str(first.resolve()) in str(err.value) and str(second.resolve()) in str(err.value)


def test_invalid_file_name_is_bad_input_naming_the_file(tmp_path):
    bad = touch(tmp_path / "has space.dat")
    with pytest.raises(BadInput, match=str(bad.resolve())):
        list(from_directory(tmp_path, "cta"))


def test_invalid_scope_is_bad_input(tmp_path):
    touch(tmp_path / "f.dat")
    with pytest.raises(BadInput, match="scope"):
        list(from_directory(tmp_path, "no/slash"))


def test_sidecar_that_is_not_a_json_object_is_bad_input(tmp_path):
    touch(tmp_path / "f.dat")
    sidecar = touch(tmp_path / "f.dat.meta.json", "[1, 2]")
    with pytest.raises(BadInput, match=str(sidecar.resolve())):
        list(from_directory(tmp_path, "cta"))


def test_file_with_fits_magic_but_broken_header_has_no_fits_metadata(tmp_path):
    touch(tmp_path / "broken.fits", "SIMPLE  =                    T" + " " * 50)
    (record,) = from_directory(tmp_path, "cta")
    assert record.meta == {}


def test_from_spec_count_and_bytes_equal_the_plan_summary(plan):
    records = list(from_spec(plan))
    summary = summarize(plan)
    assert len(records) == summary.n_files and sum(r.bytes for r in records) == summary.n_bytes
    assert {r.dataset for r in records} == {name for name, _, _ in summary.datasets}


def test_from_spec_leaves_adler32_to_the_upload(plan):
    record = next(from_spec(plan))
    assert record.adler32 is None and record.source.startswith("payload:")


def test_planned_file_round_trips_through_the_journal(plan, tmp_path):
    with IngestJournal.create(tmp_path / "journal.sqlite", {}) as journal:
        journal.add_files(from_spec(plan))
        stored = [r for batch in journal.batches(FileState.PLANNED) for r in batch]
    assert [planned_file(r) for r in stored] == list(plan.files())
    assert [open_stream(planned_file(r)).size for r in stored] == [r.bytes for r in stored]


def test_planned_file_refuses_a_directory_record(tmp_path):
    touch(tmp_path / "f.dat")
    with pytest.raises(ValueError, match="payload"):
        planned_file(next(from_directory(tmp_path, "cta")))


def test_required_missing_lists_absent_and_empty_keys_in_order():
    meta = {"obs_id": 0, "telescope": "", "run": None, "site": "CTAO-North"}
    assert required_missing(meta, ["site", "obs_id", "telescope", "run", "night"]) == ["telescope", "run", "night"]
