"""The DID calls of the `Catalog` (Rucio's DIDClient): datasets created once and in bulk, files
attached and given their metadata in bulk, and the look-ups a retrieve selects its files with."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from rucio.common import exception as rucio_exc

from nightlake.catalog.bulk import Rejected, chunks
from nightlake.catalog.retry import GaveUp

Did = tuple[str, str]


class DidCalls:
    def existing(self, dids: Sequence[Did]) -> dict[Did, dict]:
        """The DIDs among these that exist, with their metadata (`did_type`, `is_open`, ...): one
        `get_metadata_bulk` per batch."""
        found: dict[Did, dict] = {}
        for chunk in chunks(dids, self.batch_size):
            items = [{"scope": s, "name": n} for s, n in chunk]
            for meta in self.call(lambda c=items: list(self.client.get_metadata_bulk(c))):
                found[(meta["scope"], meta["name"])] = meta
        return found

    def add_datasets(self, dids: Sequence[Did], did_type: str = "DATASET") -> list[Rejected]:
        """Create datasets (or containers) in bulk (the caller has asked `existing` first); one that
        appeared meanwhile is fine."""
        items = [{"scope": s, "name": n, "type": did_type} for s, n in dids]

        def add(chunk: list[dict]) -> None:
            try:
                self.client.add_dids(chunk)
            except rucio_exc.DataIdentifierAlreadyExists:
                if len(chunk) > 1:
                    raise
        return self._bisected(add, items)

    def attach(self, dataset: Did, files: Sequence[Did]) -> list[Rejected]:
        """Attach files to a dataset (or datasets to a container); those already attached are
        fine (`ignore_duplicate`)."""
        scope, name = dataset
        items = [{"scope": s, "name": n} for s, n in files]

        def attach(chunk: list[dict]) -> None:
            self.client.attach_dids_to_dids([{"scope": scope, "name": name, "dids": chunk}],
                                            ignore_duplicate=True)
        return self._bisected(attach, items)

    def attach_collections(self, links: Sequence[tuple[Did, Did]]) -> list[Rejected]:
        """Attach collections to their parent containers, (parent, child) pairs, many parents per
        call (`attach_dids_to_dids` takes a list); pairs already attached are fine."""
        items = [{"parent": parent, "scope": child[0], "name": child[1]} for parent, child in links]

        def attach(chunk: list[dict]) -> None:
            by_parent: dict[Did, list[dict]] = {}
            for item in chunk:
                by_parent.setdefault(item["parent"], []).append({"scope": item["scope"], "name": item["name"]})
            self.client.attach_dids_to_dids([{"scope": s, "name": n, "dids": dids}
                                             for (s, n), dids in by_parent.items()], ignore_duplicate=True)
        return self._bisected(attach, items)

    def set_metadata(self, files: list[dict]) -> list[Rejected]:
        """Set DID metadata ({scope, name, meta}) in bulk; idempotent, so safe to repeat on resume."""
        def set_bulk(chunk: list[dict]) -> None:
            self.client.set_dids_metadata_bulk(dids=chunk, recursive=False)

        return self._bisected(set_bulk, [f for f in files if f["meta"]])

    def close(self, dataset: Did) -> None:
        """Close a dataset so that rules on it stop growing; closing a closed dataset is fine."""
        scope, name = dataset
        try:
            self.call(self.client.set_status, scope, name, open=False)
        except GaveUp as failure:
            if "already closed" not in failure.classified.message.lower() and \
                    not isinstance(failure.original, rucio_exc.UnsupportedOperation):
                raise

    def files_in(self, collections: Sequence[Did]) -> Iterator[dict]:
        """The files ({scope, name, ...}) of datasets and containers (`bulk_list_files` expands
        containers too), one call per batch."""
        for chunk in chunks(collections, self.batch_size):
            yield from self.call(self.client.bulk_list_files, [{"scope": s, "name": n} for s, n in chunk])

    def files_matching(self, scope: str, filters: Mapping[str, str]) -> Iterator[str]:
        """Names of the files in `scope` whose metadata match every filter (Rucio ANDs the keys of
        one filter dict, and streams the names)."""
        return self.call(self.client.list_dids, scope, dict(filters), did_type="file")
