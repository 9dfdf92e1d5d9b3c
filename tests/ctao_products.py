"""A CTAO DataProducts `Product` and a FITS file whose header CTAO's data model wrote, with the DID
metadata nightlake must read from it (for the ctaometa tests; they need ctao-datamodel, Python >= 3.12)."""

from __future__ import annotations

import uuid
import warnings

import numpy as np
from astropy.io import fits

DATA_ID = uuid.UUID("3f1e0d7c-8a44-4b0e-9d55-7a2b9c1e0f42")
ACTIVITY_ID = uuid.UUID("0b6a1c2e-5d3f-4e8a-9b7c-1d2e3f4a5b6c")

EXPECTED = {
    "ctao_meta": "2.1.0", "title": "LST-1 DL0 events", "created": "2026-03-15T06:00:00.000",
    "data_level": "DL0", "data_division": "Event", "data_association": "Telescope", "data_type": "AirShower",
    "data_id": str(DATA_ID), "obs_id": 2000000123, "ae_id": 1, "tel_id": 1, "chunk_id": 4, "local_run_id": 42,
    "night": "2026-03-14", "site": "CTAO-South", "facility": "CTAO", "origin": "CTAO", "release": "DL0-test",
    "valid_from": "2026-03-14T23:00:00.000", "data_model": "CTAO", "data_model_version": "1.0",
    "activity_id": str(ACTIVITY_ID), "activity": "acquisition", "software": "acada_sdh",
    "software_version": "v1.0.0", "date_obs": "2026-03-14T23:00:00.000", "date_end": "2026-03-14T23:20:00.000",
}


def make_product():
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


def write_fits(path, header: fits.Header):
    """A primary HDU of `header` with 3000 int16 values (two data blocks), checksums included."""
    fits.PrimaryHDU(data=np.arange(3000, dtype=np.int16), header=header).writeto(path, checksum=True)
    return path


def ctao_written(product, path, extra=()):
    """A FITS file whose primary header is CTAO's data model's own (`instance_to_fits_header`)."""
    from ctao_datamodel import instance_to_fits_header

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # CTAO's long comments get cut
        header = instance_to_fits_header(product)
        header.extend(extra)
        return write_fits(path, header)
