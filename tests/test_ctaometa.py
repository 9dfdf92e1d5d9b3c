"""ctaometa: CTAO's reference metadata (CTAOMETA headers) read through ctao-datamodel when it is
installed, the keyword mapping otherwise; either way from the header's blocks alone."""

import pytest
from astropy.io import fits

from ctao_products import DATA_ID, EXPECTED, ctao_written, make_product, write_fits
from nightlake.night.fits import ctaometa
from nightlake.night.fits import header as fitsheader
from nightlake.night.fits.header import file_metadata, read_header, rucio_metadata
from nightlake.night.fits.layout import BLOCK
from nightlake.night.fits.verify import Verifier
from nightlake.night.sources import from_directory

needs_datamodel = pytest.mark.skipif(
    not ctaometa.available(), reason="ctao-datamodel is not importable here (the ctaometa extra; Python >= 3.12)")


def hand_written_header() -> fits.Header:
    """Cards as CTAO's data model writes them (for the fallback tests, which need no package),
    with the header mapping's own RUN/SUBRUN beside them."""
    header = fits.Header([("CTAOMETA", "2.1.0"), ("TITLE", "LST-1 DL0 events"), ("DATALEVL", "DL0"),
                          ("DATADIV", "Event"), ("DATAASSO", "Telescope"), ("DATATYPE", "AirShower"),
                          ("DATAID", str(DATA_ID)), ("OBS_ID", 2000000123), ("AE_ID", 1),
                          ("OBSNIGHT", "2026-03-14"), ("TELESCOP", "CTAO"), ("INSTRUME", "CTAO-South"),
                          ("ORIGIN", "CTAO"), ("RUN", 7), ("SUBRUN", 3)])
    header["HIERARCH CTAO CURATION VALID_FROM"] = "2026-03-14T23:00:00.000"
    return header


def test_header_without_ctaometa_never_asks_ctao_datamodel(tmp_path, monkeypatch):
    monkeypatch.setattr(ctaometa, "reference_metadata", lambda raw: pytest.fail("asked ctao-datamodel"))
    header = fits.Header([("TELESCOP", "LST-1"), ("OBS_ID", 5), ("DATALEVL", "DL0")])
    path = write_fits(tmp_path / "plain.fits", header)
    assert file_metadata(path) == {"telescope": "LST-1", "obs_id": 5, "data_level": "DL0"}


def test_without_ctao_datamodel_a_ctaometa_header_gets_the_keyword_mapping(tmp_path, monkeypatch):
    monkeypatch.setattr(ctaometa, "available", lambda: False)
    path = write_fits(tmp_path / "ctao.fits", hand_written_header())
    assert file_metadata(path) == rucio_metadata(read_header(path))
    assert file_metadata(path)["telescope"] == "CTAO" and "data_id" not in file_metadata(path)


@pytest.fixture(scope="module")
def product():
    return make_product()


@needs_datamodel
def test_ctao_written_header_gives_the_reference_metadata(product, tmp_path):
    path = ctao_written(product, tmp_path / "ctao.fits")
    assert file_metadata(path) == EXPECTED
    assert "HIERARCH CTAO CURATION VALID_FROM" in fits.getheader(path)  # the hierarchical cards read too


@needs_datamodel
def test_header_mapping_keywords_outside_ctaos_model_still_map(product, tmp_path):
    path = ctao_written(product, tmp_path / "ctao.fits", [("RUN", 7), ("SUBRUN", 3)])
    assert file_metadata(path) == {**EXPECTED, "run": 7, "subrun": 3}


@needs_datamodel
def test_ctao_datamodel_reads_only_the_header_blocks(product, tmp_path):
    path = ctao_written(product, tmp_path / "ctao.fits")
    raw = path.read_bytes()
    header_end = len(fitsheader.read_blocks(path))
    cut = tmp_path / "cut.fits"
    cut.write_bytes(raw[:header_end] + b"\xff" * 100)  # data truncated and garbage
    assert file_metadata(cut) == EXPECTED
    verifier = Verifier()  # the whole file is good FITS: the checksums CTAO's header shares verify
    verifier.update(raw)
    assert verifier.problem() is None and header_end % BLOCK == 0


@needs_datamodel
def test_invalid_reference_metadata_falls_back_to_the_keyword_mapping(product, tmp_path):
    # CTAOMETA, but no CREATED, contact, curation or model: not a valid Product for CTAO's model
    incomplete = write_fits(tmp_path / "incomplete.fits", hand_written_header())
    # a hierarchical card under a field that is a value: CTAO's reader raises TypeError, not a ValidationError
    nested = ctao_written(product, tmp_path / "nested.fits", [("HIERARCH CTAO INSTANCE OBS_ID X", 1)])
    for path in (incomplete, nested):
        assert file_metadata(path) == rucio_metadata(read_header(path))
    assert "data_id" not in file_metadata(nested) and file_metadata(nested)["obs_id"] == 2000000123


@needs_datamodel
def test_directory_ingest_plans_the_reference_metadata(product, tmp_path):
    (tmp_path / "d").mkdir()
    ctao_written(product, tmp_path / "d" / "obs2000000123.fits")
    (record,) = from_directory(tmp_path / "d", "cta")
    assert record.meta == EXPECTED
