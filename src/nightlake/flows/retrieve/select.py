"""The selection of a retrieve, journaled before any byte moves: DIDs (files, datasets, containers)
or a DID metadata filter, resolved by Rucio in bulk into files with their replica, size and adler32.

The named DIDs are looked up first (`Catalog.existing`), before the run directory is touched, so an
unknown DID is bad input and changes nothing. Files are then streamed 1000 at a time through one
`list_replicas` call each into the journal; a file without a usable replica is journaled without a
PFN (it fails, listed, when its batch comes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import GaveUp
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.download import DownloadJournal

SCHEMES = ("https", "davs", "root", "file")  # what the storage layer speaks natively
UNREADABLE = 1 << 30  # the rank of a protocol the RSE does not offer for reading (wan read 0)
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
    """Stream the selected files, `batch_size` at a time, through `list_replicas` into the journal."""
    added, priorities = 0, ReadPriorities(catalog)
    try:
        while chunk := list(islice(files, catalog.batch_size)):
            added += journal.add_files(_with_replicas(catalog, chunk, rse, from_rse, priorities))
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


def _with_replicas(catalog: Catalog, files: list[dict], rse: str | None, from_rse: str | None,
                   priorities: ReadPriorities) -> Iterator[dict]:
    """Journal rows for ≤ 1000 files, with the replica each will be read from."""
    replicas = catalog.replicas([(f["scope"], f["name"]) for f in files], SCHEMES, rse)
    for f in files:
        replica = replicas.get((f["scope"], f["name"]), f)
        rse_name, pfn = choose_replica(replica, from_rse, priorities)
        yield {"scope": f["scope"], "name": f["name"], "bytes": replica.get("bytes") or 0,
               "adler32": replica.get("adler32"), "rse": rse_name, "pfn": pfn}


class ReadPriorities:
    """(rse, scheme) → the RSE's own read priority of that protocol (1 is best), one `rse_info`
    per RSE. `list_replicas` is asked in random order (see `Catalog.replicas`), so the ranking is
    ours, from the RSE's protocols, as `rucio download` ranks them."""

    def __init__(self, catalog: Catalog):
        self._catalog = catalog
        self._by_rse: dict[str, dict[str, int]] = {}

    def __call__(self, rse: str, scheme: str) -> int:
        if rse not in self._by_rse:
            protocols = self._catalog.rse_info(rse).get("protocols") or []
            self._by_rse[rse] = {p["scheme"]: p["domains"]["wan"]["read"] or UNREADABLE for p in protocols}
        return self._by_rse[rse].get(scheme, UNREADABLE)


def choose_replica(replica: dict, from_rse: str | None,
                   priority: Callable[[str, str], int]) -> tuple[str | None, str | None]:
    """(rse, pfn): on `from_rse` when it has one, else any; within an RSE, its protocol priority."""
    pfns = [(meta["rse"], priority(meta["rse"], scheme), pfn) for pfn, meta in (replica.get("pfns") or {}).items()
            if (scheme := pfn.split(":", 1)[0]) in SCHEMES]
    preferred = [p for p in pfns if p[0] == from_rse]
    if not (preferred or pfns):
        return None, None
    rse, _, pfn = min(preferred or pfns)
    return rse, pfn
