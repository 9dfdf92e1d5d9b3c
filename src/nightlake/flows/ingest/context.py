"""What every stage of an ingest shares: its options, the journal, the catalog, the storage of the
upload RSE and its retry policy, the event bus, and the worker pool (or the cluster).

One `Context` per run, built by `pipeline.Ingest`; the stages (`reconcile`, `upload`, `register`)
take it and never build their own connections, so a run has one storage pool and one retry
policy per target, whichever stage is calling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.failing import record_failure
from nightlake.observe.events import EventBus
from nightlake.runs.journal.ingest import FileRecord, IngestJournal
from nightlake.storage import PART_SUFFIX, Stat, Storage, adler, chunks_of


@dataclass(frozen=True)
class IngestOptions:
    """How to run an ingest; the defaults suit the local lake and a 2-core client.

    `workers`: uploads in parallel (4 per worker are kept in flight). `batch_files`: files per
    journal transition and per bulk catalog call (at most 1000, the server's limit).
    `batch_bytes`: bytes (not GB: 16 GiB = 16 << 30) after which an upload batch is closed early,
    so big files make small batches. `queue_depth`: batches waiting between two stages.
    `required_meta`: metadata keys without which a file is quarantined (set aside). `close_datasets`: close each
    dataset once all its files are done. `in_place`: the files already are on the RSE.
    `register`: `generic` (replicas, datasets, containers and attachments in bulk calls of their
    own) or `dirac` (Rucio's DIRAC endpoint, `add_files`: all of it in one call per batch).
    `catalog_lanes`: bulk calls in flight in the register stage, and in the metadata stage (each
    lane a thread with a Rucio client of its own): one waits on latency, several on the server.
    """

    rse: str
    workers: int = 8
    batch_files: int = 1000
    batch_bytes: int = 16 << 30
    queue_depth: int = 2
    required_meta: tuple[str, ...] = ()
    close_datasets: bool = True
    in_place: bool = False
    register: str = "generic"
    catalog_lanes: int = 1


PfnResolver = Callable[[list[FileRecord]], dict[str, str]]
SourceOpener = Callable[[FileRecord], Any]  # a storage.Source: a Path, or a factory of chunks


@dataclass(frozen=True)
class Context:
    journal: IngestJournal
    catalog: Catalog
    storage: Storage
    pfn_of: PfnResolver
    open_source: SourceOpener
    options: IngestOptions
    bus: EventBus
    storage_policy: RetryPolicy
    pool: ThreadPoolExecutor = field(repr=False)
    cluster: Any = field(default=None, repr=False)  # a flows.cluster.Cluster: uploads run on its workers
    remote: Any = None  # an upload.RemoteStorage: how a cluster worker opens the upload RSE's storage

    def on_storage(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A storage call under the upload RSE's retry policy."""
        return self.storage_policy.call(fn, *args, **kwargs)

    def stat_all(self, records: Sequence[FileRecord]) -> list[Stat | None]:
        """The storage's view of each record's PFN, in parallel."""
        return list(self.pool.map(lambda r: self.on_storage(self.storage.stat, r.pfn), records))

    def delete_quietly(self, pfns: Iterable[str]) -> None:
        """Leftovers of interrupted uploads would be dark data: delete them, in parallel; one that
        cannot be deleted now is found again by the next reconcile."""
        def delete(pfn: str) -> None:
            with contextlib.suppress(Exception):
                self.storage.delete(pfn)
        list(self.pool.map(delete, pfns))

    def discard_parts(self, records: Iterable[FileRecord]) -> None:
        self.delete_quietly(r.pfn + PART_SUFFIX for r in records)

    def fail(self, records: Sequence[FileRecord], exc: BaseException) -> None:
        record_failure(self.journal, records, exc, self.bus)

    def source_adler32(self, record: FileRecord) -> str:
        """The adler32 of the source's bytes: read from a local file, computed for a payload;
        raises OSError when the source cannot be read."""
        counter = adler.Adler32Counter(chunks_of(self.open_source(record)))
        for _ in counter:
            pass
        return counter.adler32
