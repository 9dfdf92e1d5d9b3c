"""Where each selected file is read from: its RSE and PFN, for the journal `select` writes.

Rucio's `list_replicas` answers per file and costs the server 1.5-3.5 ms per file on the local
lake (it reads an RSE attribute and builds a PFN for every replica, uncached): 3-7 s for 2,000
files, before the first byte moves. Most retrieves name datasets that one RSE holds whole, and
one `list_dataset_replicas(deep=True)` per dataset says so, from the replica table. The files of
a dataset complete on a deterministic RSE get their PFN from Rucio's own lfn2pfn on the client
(`storage.pfns`, as the server and `rucio download` compute it). Every other file (named alone,
found by a metadata filter, in a container, or in a dataset no RSE holds whole) is asked with
`list_replicas`, 1000 per call. Both ways choose the same replica: on `from_rse` when it has
one, else on the first RSE by name; within an RSE, its own best read protocol.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from nightlake.catalog.client import Catalog
from nightlake.storage import pfns

SCHEMES = ("https", "davs", "root", "file")  # what the storage layer speaks natively
UNREADABLE = 1 << 30  # the rank of a protocol the RSE does not offer for reading (wan read 0)
Did = tuple[str, str]
Source = tuple[str, str]  # (rse, scheme) a whole dataset is read from


class ReadPriorities:
    """(rse, scheme) → the RSE's own read priority of that protocol (1 is best), one `rse_info`
    per RSE. `list_replicas` is asked in random order (see `Catalog.replicas`), so the ranking is
    ours, from the RSE's protocols, as `rucio download` ranks them."""

    def __init__(self, catalog: Catalog):
        self._catalog = catalog
        self._info: dict[str, dict] = {}
        self._ranks: dict[str, dict[str, int]] = {}

    def __call__(self, rse: str, scheme: str) -> int:
        if rse not in self._ranks:
            protocols = self.rse_info(rse).get("protocols") or []
            self._ranks[rse] = {p["scheme"]: p["domains"]["wan"]["read"] or UNREADABLE for p in protocols}
        return self._ranks[rse].get(scheme, UNREADABLE)

    def rse_info(self, rse: str) -> dict:
        """Rucio's description of the RSE (protocols, lfn2pfn, deterministic), asked once."""
        if rse not in self._info:
            self._info[rse] = self._catalog.rse_info(rse)
        return self._info[rse]

    def best_scheme(self, rse: str) -> str | None:
        rank, scheme = min((self(rse, s), s) for s in SCHEMES)
        return scheme if rank < UNREADABLE else None


def choose_replica(replica: dict, from_rse: str | None,
                   priority: Callable[[str, str], int]) -> tuple[str | None, str | None]:
    """(rse, pfn): on `from_rse` when it has one, else any; within an RSE, its protocol priority."""
    pfns_ = [(meta["rse"], priority(meta["rse"], scheme), pfn) for pfn, meta in (replica.get("pfns") or {}).items()
             if (scheme := pfn.split(":", 1)[0]) in SCHEMES]
    preferred = [p for p in pfns_ if p[0] == from_rse]
    if not (preferred or pfns_):
        return None, None
    rse, _, pfn = min(preferred or pfns_)
    return rse, pfn


class ReplicaChooser:
    """Journal rows ({scope, name, bytes, adler32, rse, pfn}) for batches of selected files.

    `rse`: an RSE expression the replicas must match (None: any); `from_rse`: preferred."""

    def __init__(self, catalog: Catalog, rse: str | None, from_rse: str | None):
        self.catalog, self.rse, self.from_rse = catalog, rse, from_rse
        self.priorities = ReadPriorities(catalog)
        self._allowed: set[str] | None = None
        self._sources: dict[Did, Source | None] = {}

    def rows(self, files: list[dict]) -> Iterator[dict]:
        """Rows for ≤ 1000 files: by dataset where one RSE holds it whole, else by `list_replicas`."""
        by_source: dict[Source, list[dict]] = defaultdict(list)
        listed = []
        for f in files:
            source = self._source((f["parent_scope"], f["parent_name"])) if f.get("parent_name") else None
            if source is not None and f.get("adler32"):
                by_source[source].append(f)
            else:
                listed.append(f)
        for (rse, scheme), group in by_source.items():
            found = pfns(self.priorities.rse_info(rse), scheme, group, operation="read")
            yield from (_row(f, f, rse, found[f"{f['scope']}:{f['name']}"]) for f in group)
        if listed:
            yield from self._listed(listed)

    def _listed(self, files: list[dict]) -> Iterator[dict]:
        replicas = self.catalog.replicas([(f["scope"], f["name"]) for f in files], SCHEMES, self.rse)
        for f in files:
            replica = replicas.get((f["scope"], f["name"]), f)
            yield _row(f, replica, *choose_replica(replica, self.from_rse, self.priorities))

    def _source(self, dataset: Did) -> Source | None:
        if dataset not in self._sources:
            self._sources[dataset] = self._whole_on(dataset)
        return self._sources[dataset]

    def _whole_on(self, dataset: Did) -> Source | None:
        """The RSE and scheme the per-file choice would pick for every file of the dataset, when
        that RSE holds it whole and lfn2pfn is deterministic there; else None (ask per file)."""
        rows = [r for r in self.catalog.dataset_replicas(dataset) if self._matches(r["rse"])]
        holding = {r["rse"]: r for r in rows}  # an RSE holding none of the files is not listed
        if len(holding) < len(rows):
            return None  # an RSE listed twice (archives): leave it to list_replicas
        rse = self.from_rse if self.from_rse in holding else min(holding, default=None)
        if rse is None or holding[rse]["available_length"] != holding[rse]["length"]:
            return None
        scheme = self.priorities.best_scheme(rse)
        return (rse, scheme) if scheme and self.priorities.rse_info(rse).get("deterministic") else None

    def _matches(self, rse: str) -> bool:
        if self.rse is None:
            return True
        if self._allowed is None:
            self._allowed = self.catalog.rses_matching(self.rse)
        return rse in self._allowed


def _row(f: dict, replica: dict, rse: str | None, pfn: str | None) -> dict:
    return {"scope": f["scope"], "name": f["name"], "bytes": replica.get("bytes") or 0,
            "adler32": replica.get("adler32"), "rse": rse, "pfn": pfn}
