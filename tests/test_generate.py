"""generate: valid FITS carrying the planned metadata, byte-identical per seed, resumable."""

import dataclasses
import filecmp
import itertools
import warnings
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

from nightlake.cli import cli
from nightlake.flows.generate import file_path, generate, write_file
from nightlake.night.fits.layout import KEYWORDS
from nightlake.night.plan import Plan, summarize
from nightlake.night.spec import load_spec

SPEC = """
[night]
site = "CTAO-North"
date = 2026-03-14
seed = {seed}
telescopes = ["LST-1", "LST-2"]

[datasets]
count = 2
files = {{ min = 3, max = 6 }}

[sizes]
kind = "log-uniform"
min = "3 kB"
max = "1.5 MB"
"""


@pytest.fixture
def spec_path(tmp_path) -> Path:
    path = tmp_path / "night.toml"
    path.write_text(SPEC.format(seed=11))
    return path


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_two_generations_are_byte_identical(spec_path, tmp_path):
    plan = Plan(load_spec(spec_path))
    generate(plan.files(), tmp_path / "a", workers=1)
    generate(plan.files(), tmp_path / "b", workers=3)
    names = tree(tmp_path / "a")
    assert names == tree(tmp_path / "b") and names
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(names)


def test_every_file_is_valid_fits_with_the_planned_metadata(spec_path, tmp_path):
    plan = Plan(load_spec(spec_path))
    generate(plan.files(), tmp_path, workers=2)
    for planned in plan.files():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with fits.open(file_path(tmp_path, planned), checksum=True) as hdul:
                hdul.verify("exception")
                header = hdul[0].header
                assert hdul[0].verify_checksum() == 1 and hdul[0].verify_datasum() == 1
        for key, keyword in KEYWORDS.items():
            assert header[keyword] == planned.meta[key]


def test_written_bytes_equal_planned_bytes(spec_path, tmp_path):
    plan = Plan(load_spec(spec_path))
    report = generate(plan.files(), tmp_path)
    sizes = {str(file_path(tmp_path, f)): f.size for f in plan.files()}
    assert {str(p): p.stat().st_size for p in tmp_path.rglob("*.fits")} == sizes
    assert report.bytes_written == summarize(plan).n_bytes == sum(sizes.values())


def test_rerun_skips_complete_files_and_rewrites_broken_ones(spec_path, tmp_path):
    plan = Plan(load_spec(spec_path))
    files = list(plan.files())
    generate(files, tmp_path)
    truncated, foreign = file_path(tmp_path, files[0]), file_path(tmp_path, files[1])
    good = truncated.read_bytes()
    with open(truncated, "r+b") as f:
        f.truncate(len(good) - 2880)
    foreign.write_bytes(file_path(tmp_path, files[2]).read_bytes()[: files[1].size].ljust(files[1].size, b"\0"))
    report = generate(files, tmp_path)
    assert (report.written, report.skipped) == (2, len(files) - 2)
    assert truncated.read_bytes() == good


def test_a_file_of_another_seed_is_rewritten(spec_path, tmp_path):
    planned = next(Plan(load_spec(spec_path)).files())
    write_file(planned, tmp_path)
    other = dataclasses.replace(planned, payload_seed=planned.payload_seed + 1)
    assert write_file(planned, tmp_path) is False
    assert write_file(other, tmp_path) is True
    assert write_file(other, tmp_path) is False


def test_a_leftover_part_file_is_never_taken_for_complete(spec_path, tmp_path):
    planned = next(Plan(load_spec(spec_path)).files())
    path = file_path(tmp_path, planned)
    path.parent.mkdir(parents=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(b"\0" * 100)
    assert write_file(planned, tmp_path) is True
    assert not part.exists() and path.stat().st_size == planned.size


def test_generate_command_writes_and_resumes(spec_path, tmp_path):
    out = tmp_path / "out"
    first = CliRunner().invoke(cli, ["generate", str(spec_path), "--out", str(out)])
    assert first.exit_code == 0, first.output
    n = len(list(out.rglob("*.fits")))
    assert n == summarize(Plan(load_spec(spec_path))).n_files and f"wrote {n} files" in first.output
    again = CliRunner().invoke(cli, ["generate", str(spec_path), "--out", str(out)])
    assert again.exit_code == 0 and "wrote 0 files" in again.output and f"skipped {n}" in again.output


def test_unwritable_out_is_bad_input(spec_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["generate", str(spec_path), "--out", str(blocker / "sub")])
    assert result.exception is not None and f"{blocker} is not a directory" in str(result.exception)


@pytest.mark.parametrize("value", ["LST-1", "it's", "x" * 8, "x" * 40, "2026-03-14T20:00:00.000", 0, 7, -3,
                                   10**12, True, False, "", "  lead", "trail  ", "é", 1.5, "y" * 70])
def test_fast_header_cards_are_byte_identical_to_astropy(value):
    from nightlake.night.fits.layout import _astropy_header, _fast_header

    cards = [("SIMPLE", True), ("NAXIS1", 2880), ("ORIGIN", value), ("DATASUM", "12345")]
    fast = _fast_header(cards)
    plain = value in ("LST-1", "it's", "x" * 8, "x" * 40, "2026-03-14T20:00:00.000", "  lead") or type(value) in (int, bool)
    assert (fast is not None) == plain
    assert fast is None or fast == _astropy_header(cards)


def test_every_planned_header_renders_without_astropy(tmp_path):
    from nightlake.night.fits.layout import KEYWORDS, _fast_header
    from nightlake.night.plan import Plan
    from nightlake.night.spec import load_spec

    for preset in ("demo", "dr-phase2", "cta-night"):
        plan = Plan(load_spec(Path(__file__).parents[1] / "examples" / f"{preset}.toml"))
        for planned in itertools.islice(plan.files(), 300):
            cards = [(keyword, planned.meta[key]) for key, keyword in KEYWORDS.items()]
            assert _fast_header(cards) is not None
