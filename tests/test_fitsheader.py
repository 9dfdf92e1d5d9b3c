"""fitsheader: the primary header from its blocks alone, equal to astropy's, mapped to Rucio metadata."""

import re
from pathlib import Path

import pytest
from astropy.io import fits

from nightlake.flows.generate import file_path, generate
from nightlake.night.fits import header as fitsheader
from nightlake.night.fits.header import (
    BadHeader,
    astropy_cards,
    is_fits,
    parse_cards,
    read_blocks,
    read_header,
    rucio_metadata,
)
from nightlake.night.fits.layout import BLOCK
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec

SPEC = """
[night]
site = "CTAO-South"
date = 2026-03-14
seed = 5
telescopes = ["LST-1", "MST-01"]

[datasets]
count = 2
files = 3

[sizes]
kind = "log-uniform"
min = "3 kB"
max = "40 kB"
"""


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """(planned file, path) for a small generated night."""
    root = tmp_path_factory.mktemp("night")
    (root / "night.toml").write_text(SPEC)
    files = list(Plan(load_spec(root / "night.toml")).files())
    generate(files, root / "out", workers=1)
    return [(planned, file_path(root / "out", planned)) for planned in files]


def fast_only(monkeypatch):
    """Make the astropy fallback fail, so a test proves the card parser did the work."""
    def refuse(raw):
        raise AssertionError("fell back to astropy")
    monkeypatch.setattr(fitsheader, "astropy_cards", refuse)


def header_file(path: Path, header: fits.Header, data: bytes = b"\0" * BLOCK) -> Path:
    path.write_bytes(header.tostring().encode("ascii") + data)
    return path


def test_generated_headers_round_trip_the_planned_metadata(night):
    for planned, path in night:
        assert rucio_metadata(read_header(path)) == planned.meta


def test_card_parser_equals_astropy_on_generated_headers(night, monkeypatch):
    raws = [read_blocks(path) for _, path in night]
    expected = [astropy_cards(raw) for raw in raws]
    fast_only(monkeypatch)
    for raw, theirs in zip(raws, expected):
        ours = parse_cards(raw)
        assert ours == theirs
        assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}


def test_only_header_blocks_are_read(night, tmp_path):
    planned, path = night[0]
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[:BLOCK] + b"\xff" * 100)  # data truncated and garbage
    assert read_blocks(cut) == path.read_bytes()[:BLOCK]
    assert rucio_metadata(read_header(cut)) == planned.meta


def test_header_spanning_several_blocks_is_read_to_its_end_card(tmp_path):
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)]
                         + [(f"KEY{i}", i) for i in range(100)])
    path = header_file(tmp_path / "long.fits", header)
    assert len(read_blocks(path)) == 3 * BLOCK
    assert read_header(path)["KEY99"] == 99


def test_plain_cards_parse_as_astropy_parses_them(tmp_path, monkeypatch):
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("QUOTE", "it's  "),
                          ("SLASH", "a/b", "a comment / with slash"), ("NEG", -42), ("REAL", 1.5e-300),
                          ("FLAG", False), ("EMPTY", ""), ("UNDEF", None), ("DUP", 1), ("DUP", 2)])
    header.add_comment("not a value")
    header.append(fits.Card.fromstring("DEXP    =               1.25D3 / Fortran exponent"))
    raw = read_blocks(header_file(tmp_path / "plain.fits", header))
    expected = astropy_cards(raw)
    fast_only(monkeypatch)
    values = parse_cards(raw)
    assert values == expected
    assert values["DEXP"] == 1250.0 and values["DUP"] == 1 and values["QUOTE"] == "it's"


def test_hierarch_and_continue_cards_fall_back_to_astropy(tmp_path):
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)])
    header["HIERARCH CTA TEL NAME"] = "LST-1"
    header["LONGSTR"] = "x" * 150  # written as CONTINUE cards
    values = read_header(header_file(tmp_path / "odd.fits", header))
    assert values["CTA TEL NAME"] == "LST-1" and values["LONGSTR"] == "x" * 150


def test_missing_end_card_is_a_bad_header(tmp_path):
    path = tmp_path / "noend.fits"
    path.write_bytes(b"SIMPLE  =                    T".ljust(BLOCK, b" "))
    assert is_fits(path)
    with pytest.raises(BadHeader, match="END"):
        read_header(path)


def test_non_fits_files_are_not_fits(night, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("SIMPLE = T, or so I thought\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert not is_fits(text) and not is_fits(empty)
    assert is_fits(night[0][1])


def test_rucio_metadata_keys_are_rucio_friendly(night):
    keys = rucio_metadata(read_header(night[0][1]))
    assert keys and all(re.fullmatch(r"[a-z0-9_]+", key) for key in keys)
