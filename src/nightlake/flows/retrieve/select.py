"""The selection of a retrieve, journaled before any byte moves: DIDs (files, datasets, containers)
or a DID metadata filter, resolved by Rucio in bulk into files with their replica, size and adler32.

The named DIDs are looked up first (`Catalog.existing`), before the run directory is touched, so an
unknown DID is bad input and changes nothing. Files are then streamed 1000 at a time into the
journal, each with the replica it will be read from (`replicas.ReplicaChooser`: by dataset where
an RSE holds it whole, else one `list_replicas` per batch); a file without a usable replica is
journaled without a PFN (it fails, listed, when its batch comes).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import GaveUp
from nightlake.flows.retrieve.replicas import ReplicaChooser
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.download import DownloadJournal

Did = tuple[str, str]


def parse_did(text: str) -> Did:
    scope, sep, name = text.partition(":")
    if not sep or not scope or not name:
        raise BadInput(f"{text!r}: expected a DID as SCOPE:NAME")
    return scope, name


def did_types(catalog: Catalog, dids: list[Did]) -> dict[Did, str]:
    """{did: FILE | DATASET | CONTAINER} of the named DIDs; an unknown one is bad input."""
    types = {did: meta["did_type"] for did, meta in catalog.existing(dids).items()}
    if missing := [f"{s}:{n}" for s, n in dids if (s, n) not in types]:
        raise BadInput(f"unknown DID(s): {', '.join(missing[:5])}")
    return types


def journal_selection(journal: DownloadJournal, catalog: Catalog, files: Iterator[dict], rse: str | None,
                      from_rse: str | None, bus: EventBus) -> None:
    """Stream the selected files, `batch_size` at a time, with their replicas into the journal."""
    added, chooser = 0, ReplicaChooser(catalog, rse, from_rse)
    try:
        while chunk := list(islice(files, catalog.batch_size)):
            added += journal.add_files(chooser.rows(chunk))
    except GaveUp as failure:
        if failure.classified.error_class.transient:
            raise
        raise BadInput(f"Rucio refused the selection: {failure.classified.message}") from None
    if not sum(journal.counts().values()):
        raise BadInput("the selection matches no files")
    journal.set_meta(planned=True)
    bus.emit(Kind.RUN_PLANNED, files=added)


def named_files(catalog: Catalog, types: dict[Did, str]) -> Iterator[dict]:
    """Files named directly, then the files of the named datasets and containers."""
    yield from ({"scope": s, "name": n} for (s, n), kind in types.items() if kind == "FILE")
    yield from catalog.files_in([did for did, kind in types.items() if kind != "FILE"])


def filtered_files(catalog: Catalog, scope: str, filters: dict[str, str]) -> Iterator[dict]:
    """Files whose DID metadata matches every filter (asked when the first is needed, so that a
    refusal is met where the selection is journaled)."""
    yield from ({"scope": scope, "name": name} for name in catalog.files_matching(scope, filters))
