"""Download: journaled files to `OUT/<scope>/<name>`, every one verified, the journal written in
batches.

A file reaches its final name only after its bytes, as received, match the catalog's size and
adler32 (`Storage.get` with `expected`): end to end, so a replica corrupted on disk is caught
even when the storage would compute its checksum from the corrupted bytes, and the storage is not
asked to read the object a second time for a digest. Only a file the catalog knows no adler32 for
is checked against the storage's own. A mismatch is retried once, then the file fails
(PERMANENT); the others go on. Downloads run in the one `Window`, across batch boundaries, so a
slow file delays only itself; a `Streak` per source RSE stops the run when that RSE is gone or
refuses us, as an ingest does, and a re-run resumes.

Re-running the same command resumes: files in `downloading` (the intent) are checked locally and
kept only if complete, `done` files gone from disk are planned again.

On a cluster (`--cluster`) the gets run on its workers, a batch per task (`get_on_worker`), into
OUT on a file system they share; a batch lost with its worker is settled from the local files,
like a crash, and its files planned again get another pass.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.cluster import BatchDone, Failure, run_batch
from nightlake.flows.failing import Streak, record_failure
from nightlake.flows.window import Window
from nightlake.night import names
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.download import D, Download, DownloadJournal
from nightlake.storage import (
    PART_SUFFIX,
    Stat,
    Storage,
    adler,
    open_storage,
)
from nightlake.storage import credentials as storage_credentials

if TYPE_CHECKING:
    from nightlake.flows.retrieve.run import RetrieveRequest

LEGACY_STAGING = ".nightlake-get"  # where runs before Storage.get(expected=) staged a download
IN_FLIGHT = 4  # downloads per worker kept in flight
JOURNAL_BYTES = 1 << 30  # done files are journaled at least every GiB (a crash re-verifies less)
CLUSTER_PASSES = 3  # passes over the planned files on a cluster: a lost batch's files get another


class Storages:
    """One shared `Storage` per scheme, opened on first use."""

    def __init__(self, pool_size: int):
        self._pool_size = pool_size
        self._open: dict[str, Storage] = {}
        self._lock = threading.Lock()

    def for_pfn(self, pfn: str) -> Storage:
        scheme = pfn.split(":", 1)[0]
        with self._lock:
            if scheme not in self._open:
                creds = storage_credentials.from_rucio_config() if scheme != "file" else \
                    storage_credentials.StorageCredentials(True, None)
                self._open[scheme] = open_storage({"scheme": scheme}, ca_cert=creds.ca_cert,
                                                  client_cert=creds.client_cert, token=creds.token,
                                                  pool_size=self._pool_size)
            return self._open[scheme]

    def close(self) -> None:
        for storage in self._open.values():
            storage.close()


def destination(out: Path, record: Download) -> Path:
    """`OUT/<scope>/<name>`, the layout of `rucio download` (an absolute name of CTAO's policy
    under OUT/<scope>/ too); neither part may climb out of OUT."""
    name = record.name.removeprefix("/") if names.is_absolute(record.name) else record.name
    for part in (record.scope, name):
        if ".." in Path(part).parts or part.startswith("/"):
            raise ValueError(f"{record.scope}:{record.name}: would be written outside {out}")
    return out / record.scope / name


class Retrieve:
    """One retrieve run over a journal: requeue, reconcile, download."""

    def __init__(self, journal: DownloadJournal, storages: Storages, request: RetrieveRequest, bus: EventBus,
                 cluster: Any = None):
        self.journal, self.storages, self.request, self.bus = journal, storages, request, bus
        self.cluster = cluster  # a flows.cluster.Cluster: the downloads run on its workers
        self.out = request.out
        self.streaks: dict[str | None, Streak] = defaultdict(Streak)  # per source RSE
        self._done: list[Download] = []
        self._done_bytes = 0

    def run(self) -> None:
        """Bring every journaled file to `done` or `failed`. Raises the failure that ends a streak
        (a source RSE is gone, or refuses us): files in flight stay `downloading`, for the re-run."""
        if requeued := self.journal.requeue_failed():
            self.bus.emit(Kind.RUN_REQUEUED, files=requeued)
        self.reconcile()
        if self.cluster is not None:
            self._run_on_cluster()
            return
        with ThreadPoolExecutor(self.request.workers, thread_name_prefix="download") as pool:
            window: Window[Download] = Window(pool, self.request.workers * IN_FLIGHT)
            try:
                for batch in self.journal.batches(D.PLANNED, self.request.batch_files):
                    for record in self._prepare(batch):
                        for finished in window.submit(self._fetch, record):
                            self._settle(*finished)
                for finished in window.drain():
                    self._settle(*finished)
            finally:
                window.cancel()
                self._journal_done()

    def _run_on_cluster(self) -> None:
        """Batches to the cluster's workers, two per worker in flight; the files of a batch lost
        with its worker are settled from OUT and, if not there, get another pass."""
        in_flight = 2 * max(1, len(self.cluster.workers()))
        try:
            for _ in range(CLUSTER_PASSES):
                lost: list[Download] = []
                batches = (b for b in map(self._prepare, self.journal.batches(D.PLANNED, self.request.batch_files))
                           if b)
                for batch, outcome in self.cluster.map_batches(get_on_worker, batches, in_flight, out=self.out,
                                                               patience=self.request.patience,
                                                               threads=self.cluster.spec.threads):
                    if isinstance(outcome, BaseException):
                        lost += batch
                        self.bus.emit(Kind.WORKER_LOST, files=len(batch), message=str(outcome)[:200])
                    else:
                        self._settle_batch(batch, outcome)
                for record in lost:
                    self._discard_staging(record)
                    self._settle_result(record, None if self._verified_locally(record) else False)
                if not lost:
                    return
        finally:
            self._journal_done()

    def _settle_batch(self, batch: list[Download], done: BatchDone) -> None:
        files = sum(not isinstance(r, Failure) for r in done.results)
        self.bus.emit(Kind.DOWNLOAD_DONE, files=files, bytes=done.bytes)
        self.bus.emit(Kind.WORKER_BATCH, worker=done.worker, files=files, bytes=done.bytes,
                      seconds=round(done.seconds, 3))
        for record, result in zip(batch, done.results):
            self._settle_result(record, result)

    def reconcile(self) -> None:
        """Settle what a crash (or the user) may have changed, from local files only."""
        for batch in self.journal.batches(D.DOWNLOADING):
            complete = [r for r in batch if self._verified_locally(r)]
            for record in batch:
                self._discard_staging(record)
            self.journal.mark([r.id for r in complete], D.DONE)
            self.journal.mark([r.id for r in batch if r not in complete], D.PLANNED)
            self.bus.emit(Kind.RECONCILE_LOCAL, done=len(complete), replanned=len(batch) - len(complete))
        for batch in self.journal.batches(D.DONE):
            gone = [r for r in batch if not self._present(r)]
            self.journal.mark([r.id for r in gone], D.PLANNED)
            if gone:
                self.bus.emit(Kind.RECONCILE_MISSING, replanned=len(gone))

    def _present(self, record: Download) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return destination(self.out, record).stat().st_size == record.bytes
        return False

    def _verified_locally(self, record: Download) -> bool:
        """Only verified bytes ever reach the final name, but check again: cheap, local, certain."""
        if not self._present(record):
            return False
        size, adler32 = adler.file_adler32(destination(self.out, record))
        return size == record.bytes and adler32 == record.adler32

    def _discard_staging(self, record: Download) -> None:
        """Partial downloads of a crashed run, also those an earlier version staged elsewhere."""
        with contextlib.suppress(OSError, ValueError):
            dest = destination(self.out, record)
            for suffix in (PART_SUFFIX, LEGACY_STAGING, LEGACY_STAGING + PART_SUFFIX):
                dest.with_name(dest.name + suffix).unlink(missing_ok=True)

    def _prepare(self, batch: list[Download]) -> list[Download]:
        """Fail the files Rucio lists no replica for; journal the intent for the others."""
        if orphans := [r for r in batch if r.pfn is None]:
            where = f" matching {self.request.rse}" if self.request.rse else ""
            record_failure(self.journal, orphans, LookupError(f"Rucio lists no available replica{where}"), self.bus)
        batch = [r for r in batch if r.pfn is not None]
        self.journal.mark([r.id for r in batch], D.DOWNLOADING)
        return batch

    def _settle(self, record: Download, future: Future) -> None:
        try:
            result = future.result()
        except Exception as exc:  # classified, recorded as data
            result = exc
        self._settle_result(record, result)

    def _settle_result(self, record: Download, result: None | bool | BaseException | Failure) -> None:
        """A failure is recorded and the others go on, unless its RSE's streak says stop; False:
        the file is planned again (its batch was lost with a cluster worker)."""
        if result is False:
            self.journal.mark([record.id], D.PLANNED)
            return
        if isinstance(result, Failure):
            result = result.exception()
        if isinstance(result, BaseException):
            record_failure(self.journal, [record], result, self.bus)
            self.streaks[record.rse].failure(result)
            return
        self.streaks[record.rse].success()
        self._done.append(record)
        self._done_bytes += record.bytes
        if len(self._done) >= self.request.batch_files or self._done_bytes >= JOURNAL_BYTES:
            self._journal_done()

    def _journal_done(self) -> None:
        if not self._done:
            return
        self.journal.mark([r.id for r in self._done], D.DONE)
        self.bus.emit(Kind.RETRIEVE_BATCH, files=len(self._done), bytes=self._done_bytes)
        self._done.clear()
        self._done_bytes = 0

    def _fetch(self, record: Download) -> None:
        storage = self.storages.for_pfn(record.pfn)  # a stat of the file is the RSE's health check
        policy = self.request.policy.for_target(record.rse or "storage", probe=lambda: storage.stat(record.pfn))
        policy.call(self._get_verified, record)
        self.bus.emit(Kind.DOWNLOAD_DONE, files=1, bytes=record.bytes, rse=record.rse)

    def _get_verified(self, record: Download) -> None:
        """Verified against the catalog inside `get`: the final name never holds unverified bytes."""
        self.storages.for_pfn(record.pfn).get(record.pfn, destination(self.out, record),
                                              expected=Stat(record.bytes, record.adler32))


_STORAGES: dict[int, Storages] = {}  # in a worker process: the storages its batches share
_STORAGES_LOCK = threading.Lock()


def get_on_worker(batch: list[Download], out: Path, patience: float, threads: int) -> BatchDone:
    """On a cluster worker: download and verify a batch into OUT (a shared file system), `threads`
    at a time; None for each file done, or its `Failure`."""
    with _STORAGES_LOCK:
        storages = _STORAGES.setdefault(threads, Storages(threads))
    policy = RetryPolicy(patience=patience)

    def get(record: Download) -> None:
        storage = storages.for_pfn(record.pfn)
        policy.for_target(record.rse or "storage").call(storage.get, record.pfn, destination(out, record),
                                                        expected=Stat(record.bytes, record.adler32))
    return run_batch(get, batch, lambda r: r.bytes, threads)
