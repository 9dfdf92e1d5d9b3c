"""ctaometa: CTAO's reference metadata (CTAOMETA headers) read through ctao-datamodel when it is
installed, the keyword mapping otherwise; either way from the header's blocks alone."""

import uuid

import numpy as np
import pytest
from astropy.io import fits

from nightlake.night.fits import ctaometa
from nightlake.night.fits import header as fitsheader
from nightlake.night.fits.header import file_metadata, read_header, rucio_metadata
from nightlake.night.fits.layout import BLOCK
from nightlake.night.fits.verify import Verifier
from nightlake.night.sources import from_directory

needs_datamodel = pytest.mark.skipif(
    not ctaometa.available(), reason="ctao-datamodel is not importable here (the ctaometa extra; Python >= 3.12)")

DATA_ID = uuid.UUID("3f1e0d7c-8a44-4b0e-9d55-7a2b9c1e0f42")
ACTIVITY_ID = uuid.UUID("0b6a1c2e-5d3f-4e8a-9b7c-1d2e3f4a5b6c")


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


def write_fits(path, header: fits.Header):
    """A primary HDU of `header` with 3000 int16 values (two data blocks), checksums included."""
    fits.PrimaryHDU(data=np.arange(3000, dtype=np.int16), header=header).writeto(path, checksum=True)
    return path


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
    """A DL0 telescope product, as CTAO's data model builds it."""
    from astropy.time import Time
    from ctao_datamodel.models import dataproducts as dp

    return dp.Product(
        description="LST-1 DL0 events", creation_time=Time("2026-03-15T06:00:00"),
        data=dp.ProductType(level="DL0", division="Event", association="Telescope", type="AirShower"),
        instance=dp.InstanceIdentifier(id=DATA_ID, obs_id=2000000123, tel_id=1, chunk_id=4, local_run_id=42,
                                       observing_night="2026-03-14", site_id="CTAO-South"),
        curation=dp.Curation(release="DL0-test", valid_from=Time("2026-03-14T23:00:00")),
        model=dp.DataModel(name="CTAO", version="1.0"),
        contact=dp.Contact(name="Array operations", email="ops@example.org", organization="CTAO"),
        activity=dp.Activity(name="acquisition", id=ACTIVITY_ID, start=Time("2026-03-14T22:50:00"),
                             configuration_id="dl0/standard/v1",
                             software=dp.Software(name="acada_sdh", version="v1.0.0")),
        observation=dp.Observation(coverage=dp.Coverage(time=dp.TimeCoverage(
            t_min=Time("2026-03-14T23:00:00"), t_max=Time("2026-03-14T23:20:00")))),
    )


EXPECTED = {
    "ctao_meta": "2.1.0", "title": "LST-1 DL0 events", "created": "2026-03-15T06:00:00.000",
    "data_level": "DL0", "data_division": "Event", "data_association": "Telescope", "data_type": "AirShower",
    "data_id": str(DATA_ID), "obs_id": 2000000123, "ae_id": 1, "tel_id": 1, "chunk_id": 4, "local_run_id": 42,
    "night": "2026-03-14", "site": "CTAO-South", "facility": "CTAO", "origin": "CTAO", "release": "DL0-test",
    "valid_from": "2026-03-14T23:00:00.000", "data_model": "CTAO", "data_model_version": "1.0",
    "activity_id": str(ACTIVITY_ID), "activity": "acquisition", "software": "acada_sdh",
    "software_version": "v1.0.0", "date_obs": "2026-03-14T23:00:00.000", "date_end": "2026-03-14T23:20:00.000",
}


def ctao_written(product, path, extra=()):
    """A FITS file whose primary header is CTAO's data model's own (`instance_to_fits_header`)."""
    import warnings

    from ctao_datamodel import instance_to_fits_header

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # CTAO's long comments get cut
        header = instance_to_fits_header(product)
        header.extend(extra)
        return write_fits(path, header)


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
def test_invalid_reference_metadata_falls_back_to_the_keyword_mapping(tmp_path):
    header = hand_written_header()
    del header["DATADIV"]  # a required field of CTAO's model missing: not a valid Product
    path = write_fits(tmp_path / "bad.fits", header)
    assert file_metadata(path) == rucio_metadata(read_header(path))


@needs_datamodel
def test_directory_ingest_plans_the_reference_metadata(product, tmp_path):
    (tmp_path / "d").mkdir()
    ctao_written(product, tmp_path / "d" / "obs2000000123.fits")
    (record,) = from_directory(tmp_path / "d", "cta")
    assert record.meta == EXPECTED
