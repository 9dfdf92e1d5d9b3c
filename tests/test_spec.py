"""The night spec: presets load, and every mistake is one line naming the field and its range."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nightlake import BadInput
from nightlake.cli import cli
from nightlake.night.spec import load_spec, parse_size, parse_spec

ROOT = Path(__file__).resolve().parents[1]
NIGHTLAKE = Path(sys.executable).with_name("nightlake")


def base() -> dict:
    return {"night": {"site": "CTAO-North", "date": "2026-03-14"},
            "datasets": {"count": 3, "files": 10},
            "sizes": {"kind": "fixed", "size": "1 MB"}}


@pytest.mark.parametrize("name", ["cta-night", "dr-phase2", "dr-phase3", "demo"])
def test_example_specs_load(name):
    spec = load_spec(ROOT / "examples" / f"{name}.toml")
    assert spec.night.scope == "cta"


def test_demo_has_offsite_rule():
    rules = load_spec(ROOT / "examples" / "demo.toml").rules
    assert [(r.copies, r.rse_expression) for r in rules] == [(1, "OFFSITE-A")]


def test_data_challenge_ranges_are_expressible():
    raw = base()
    raw["datasets"] = {"count": 200, "files": {"min": 5, "max": 2000}}
    raw["sizes"] = {"kind": "log-uniform", "min": "1 MB", "max": "2 GB"}
    spec = parse_spec(raw)
    assert (spec.datasets.files.min, spec.datasets.files.max) == (5, 2000)
    assert (spec.sizes.min, spec.sizes.max) == (10**6, 2 * 10**9)


def test_fixed_file_count_is_shorthand_for_a_range():
    spec = parse_spec(base())
    assert (spec.datasets.files.min, spec.datasets.files.max) == (10, 10)


def test_defaults_are_ctao_style():
    spec = parse_spec(base())
    assert spec.night.scope == "cta" and spec.rules == []
    assert spec.naming.file.endswith(".fits") and "{telescope}" in spec.naming.file


@pytest.mark.parametrize("text, expected", [
    (1234, 1234), ("10 MB", 10**7), ("2 GB", 2 * 10**9), ("1.5kB", 1500), ("2 GiB", 2 * 2**30), ("5.5 TB", 55 * 10**11),
])
def test_sizes_parse_with_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r["datasets"].update(count=0), "datasets.count: must be an integer between 1 and 100000"),
    (lambda r: r["datasets"].update(files={"min": 5, "max": 300000}), "datasets.files.max: must be an integer between 1 and 100000"),
    (lambda r: r["datasets"].update(files={"min": 50, "max": 3}), "datasets.files: max (3) must be >= min (50)"),
    (lambda r: r.update(sizes={"kind": "fixed", "size": "100 GB"}), "sizes.size: must be between 1 kB and 50 GB"),
    (lambda r: r.update(sizes={"kind": "uniform", "min": "1 XB", "max": "2 GB"}), "sizes.min: must be a size"),
    (lambda r: r.update(sizes={"kind": "uniform", "min": "3 GB", "max": "2 GB"}), "sizes: max (2 GB) must be >= min (3 GB)"),
    (lambda r: r.update(sizes={"kind": "log-normal", "median": "1 MB", "sigma": 9, "min": "1 kB", "max": "2 GB"}),
     "sizes.sigma: must be a number between 0.01 and 5.0"),
    (lambda r: r.update(sizes={"kind": "gauss"}), "sizes: kind must be one of fixed, uniform, log-uniform, log-normal"),
    (lambda r: r["night"].update(scope="bad scope"), "night.scope: only letters, digits"),
    (lambda r: r["night"].update(colour="red"), "night.colour: unknown field"),
    (lambda r: r["night"].update(total_bytes="5 B"), "night.total_bytes: must be between 1 kB and 10 PB"),
    (lambda r: r.update(naming={"file": "{foo}.fits"}), "naming: file template has unknown placeholder(s) ['foo']"),
    (lambda r: r.update(naming={"file": "{obs_id}.fits"}), "so file names are unique"),
    (lambda r: r.update(rules=[{"copies": 0, "rse_expression": "X"}]), "rules.0.copies: must be an integer between 1 and 100"),
    (lambda r: r.update(rules=[{"copies": 1}]), "rules.0.rse_expression: required field is missing"),
    (lambda r: r["datasets"].update(count=100000, files=1000), "at most 10000000 per night"),
])
def test_invalid_spec_is_one_clear_line(mutate, fragment):
    raw = base()
    mutate(raw)
    with pytest.raises(BadInput) as exc:
        parse_spec(raw)
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_broken_toml_is_bad_input(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[night\nsite=")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_spec(path)


def test_plan_command_raises_bad_input_for_a_bad_spec(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[night]\nsite = "X"\ndate = 2026-03-14\n[datasets]\ncount = 0\nfiles = 5\n'
                    '[sizes]\nkind = "fixed"\nsize = "1 MB"\n')
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert isinstance(result.exception, BadInput)
    assert "datasets.count" in str(result.exception)


def test_cli_exits_2_with_one_line_naming_the_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[night]\nsite = "X"\ndate = 2026-03-14\n[datasets]\ncount = 3\nfiles = 5\n'
                    '[sizes]\nkind = "fixed"\nsize = "1 TB"\n')
    proc = subprocess.run([NIGHTLAKE, "plan", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sizes.size: must be between 1 kB and 50 GB" in lines[0]
    assert proc.stdout == ""


def test_deeply_nested_toml_is_one_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("night = " + "[" * 100_000)
    with pytest.raises(BadInput, match="nested too deeply") as exc:
        load_spec(path)
    assert "\n" not in str(exc.value)


def test_a_fifo_as_spec_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "night.toml"
    os.mkfifo(path)
    with pytest.raises(BadInput, match="not a regular file"):
        load_spec(path)


def with_naming(**naming) -> dict:
    raw = base()
    raw["night"]["telescopes"] = ["LST-1", "MST-2"]
    raw["naming"] = naming
    return raw


@pytest.mark.parametrize("naming, fragment", [
    ({"file": "../{obs_id}_{index}.fits"}, "naming.file: renders '../1_0.fits'"),
    ({"file": "a/../{obs_id}_{index}.fits"}, "a '..' segment"),
    ({"file": "/abs/{obs_id}_{index}.fits"}, "a leading '/'"),
    ({"dataset": "../{obs_id}"}, "naming.dataset: renders '../1'"),
    ({"dataset": "/{obs_id}"}, "naming.dataset: renders '/1'"),
    ({"file": "{obs_id}_{index}_" + "x" * 245 + ".fits"}, "longer than Rucio's 250 characters"),
    ({"file": "{obs_id}_{index}_{run:0245d}.fits"}, "longer than Rucio's 250 characters"),
    ({"file": "{obs_id}_{index} copy.fits"}, "not a valid Rucio DID name"),
    ({"file": "{obs_id}_{run:*>8}_{index}.fits"}, "renders '1_*******1_0.fits'"),
])
def test_rendered_names_that_rucio_refuses_are_refused_at_plan_time(naming, fragment):
    with pytest.raises(BadInput) as exc:
        parse_spec(with_naming(**naming))
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_every_telescope_is_rendered_into_the_checked_names():
    raw = with_naming()
    raw["night"]["telescopes"] = ["LST-1", "MST 2"]
    with pytest.raises(BadInput, match="renders .*MST 2"):
        parse_spec(raw)


def test_the_largest_numbers_are_rendered_into_the_checked_names():
    raw = with_naming(file="{obs_id}_{index}_" + "x" * 240 + ".fits")
    raw["datasets"] = {"count": 10, "files": 10}  # obs_id up to 10, index up to 9: 250 characters
    assert parse_spec(raw).naming.file
    raw["datasets"] = {"count": 10, "files": 11}  # index 10: 251 characters
    with pytest.raises(BadInput, match="longer than Rucio's 250 characters"):
        parse_spec(raw)


@pytest.mark.parametrize("template", ["{obs_id}_{index:999999999d}.fits", "{obs_id}_{index:.9999}.fits",
                                      "{obs_id}_{index:{run}}.fits"])
def test_a_huge_or_nested_format_width_is_refused_without_rendering_it(template):
    with pytest.raises(BadInput, match="a width beyond 250|nested fields"):
        parse_spec(with_naming(file=template))


def test_an_ingest_of_a_fifo_spec_is_refused_before_rucio_is_asked(tmp_path):
    os.mkfifo(tmp_path / "night.toml")
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "night.toml"), "--rse", "ONSITE",
                                      "--run", str(tmp_path / "run")])
    assert isinstance(result.exception, BadInput) and "not a regular file" in str(result.exception)
    assert not (tmp_path / "run").exists()
