"""CTAO's reference metadata, read from a primary header by CTAO's own data model and mapped to DID metadata.

A header written by CTAO's data model (`ctao_datamodel.instance_to_fits_header` of a DataProducts
`Product`) carries the metadata's version in `CTAOMETA`, each field that has a short FITS keyword
as that keyword (DATALEVL, OBS_ID, DATAID, OBSNIGHT, TSTART...) and the others as
`HIERARCH CTAO <PATH>` cards. `ctao_datamodel.fits_header_to_instance` reads it back into a
validated `Product` (migrating older metadata versions), so nightlake reads the keywords as CTAO
defines them instead of guessing; `FIELDS` maps the result to DID metadata keys, the header
mapping's own names where the concept is the same (`data_level`, `obs_id`, `night`, `site`,
`origin`, `date_obs`, `date_end`, `tel_id`).

The package is the optional extra `nightlake[ctaometa]` (it needs Python >= 3.12) and is imported
only when a header has CTAOMETA. Without it, or when the header is not a valid `Product`,
`reference_metadata` says None and the header mapping applies, unchanged. CTAO's reader costs ~5 ms
a header (pydantic validation, astropy times), against ~22 us for the keyword mapping of a plain header.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import cache
from typing import Any

LOG = logging.getLogger(__name__)
KEYWORD = "CTAOMETA"  # the reference metadata's version: the mark of a header CTAO's data model wrote

# `Product` attribute path -> DID metadata key (None or absent fields give no key).
FIELDS = {
    "ctao_metadata_version": "ctao_meta",
    "description": "title",
    "creation_time": "created",
    "data.level": "data_level",
    "data.division": "data_division",
    "data.association": "data_association",
    "data.type": "data_type",
    "instance.id": "data_id",
    "instance.obs_id": "obs_id",
    "instance.ae_id": "ae_id",
    "instance.ae_class": "ae_class",
    "instance.subarray_id": "subarray_id",
    "instance.chunk_id": "chunk_id",
    "instance.batch_id": "batch_id",
    "instance.local_run_id": "local_run_id",
    "instance.observing_night": "night",
    "instance.site_id": "site",
    "instance.facility_name": "facility",
    "instance.category": "data_category",
    "instance.event_type": "event_type",
    "instance.data_source": "data_source",
    "instance.particle_pdgid": "particle_pdgid",
    "contact.organization": "origin",
    "curation.release": "release",
    "curation.valid_from": "valid_from",
    "curation.valid_to": "valid_to",
    "model.name": "data_model",
    "model.version": "data_model_version",
    "activity.id": "activity_id",
    "activity.name": "activity",
    "activity.software.name": "software",
    "activity.software.version": "software_version",
    "acquisition.sb_id": "sb_id",
    "observation.coverage.time.t_min": "date_obs",
    "observation.coverage.time.t_max": "date_end",
}


@cache
def available() -> bool:
    """True if CTAO's data model can be imported here (installed, and Python >= 3.12)."""
    return importlib.util.find_spec("ctao_datamodel") is not None


def reference_metadata(raw: bytes) -> dict[str, Any] | None:
    """DID metadata from the reference metadata in a primary header's blocks; None when the
    package is missing or the header is not a valid `Product` (the caller maps keywords then)."""
    if not available():
        return None
    from astropy.io import fits
    from ctao_datamodel import fits_header_to_instance
    from ctao_datamodel.models.dataproducts import Product

    try:
        product = fits_header_to_instance(fits.Header.fromstring(raw.decode("ascii")), Product)
    except Exception as exc:  # any header comes in: pydantic's ValidationError, or a TypeError from CTAO's
        # unflattening of a card nested under a value; either way not a Product, and never a failed ingest
        LOG.debug("CTAOMETA header is not CTAO reference metadata (%s): keywords mapped instead", exc)
        return None
    return product_metadata(product)


def product_metadata(product: Any) -> dict[str, Any]:
    """`FIELDS` of a `Product` as plain values (text, integers, ISO times and dates), plus
    `tel_id` when the array element is a telescope (its class TEL, or unset on a telescope product)."""
    meta = {}
    for path, key in FIELDS.items():
        value = product
        for name in path.split("."):
            value = getattr(value, name, None)
        if value is not None:
            meta[key] = _plain(value)
    telescope = meta.get("ae_class", "TEL" if meta.get("data_association") == "Telescope" else None) == "TEL"
    if telescope and "ae_id" in meta:
        meta["tel_id"] = meta["ae_id"]
    return meta


def _plain(value: Any) -> Any:
    """A value Rucio's metadata stores as it is: bool/int/float kept, times as ISO (astropy's isot,
    millisecond precision, as the generated headers write DATE-OBS), everything else as its text."""
    if isinstance(value, (bool, int, float)):
        return value
    if hasattr(value, "isot"):
        return value.utc.isot
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
