"""Upload: planned files to the upload RSE, verified, with the intent journaled before each put.

Files are taken from the journal a batch at a time (at most `batch_files`, and closed early at
`batch_bytes`), set aside if they lack required metadata, given their PFN (Rucio's own lfn2pfn)
and journaled `uploading` with it; then up to four uploads per worker run in the one `Window`,
across batch boundaries, so a slow transfer delays only its own file. Finished uploads are
journaled `uploaded` with their adler32 and handed on, `batch_files` at a time, to registration.

In place (`--in-place`) nothing is copied: the file on storage must be the source's very bytes,
so it is verified (size, then adler32) and becomes the replica as it is.

On a cluster (`--cluster`) the puts run on its workers, a batch per task (`put_on_worker`, which
opens the RSE's storage itself from a `RemoteStorage`), while the journal stays here. A batch lost
with its worker is settled like a crash (`reconcile.settle_uploads`: complete files go on, the
others are planned again) and the files planned again get another pass.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from nightlake.catalog.failures import ChecksumMismatch
from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.cluster import BatchDone, Failure, run_batch
from nightlake.flows.failing import Streak
from nightlake.flows.ingest.context import Context
from nightlake.flows.ingest.reconcile import settle_uploads
from nightlake.flows.window import Window
from nightlake.night.fits.verify import BadChecksum
from nightlake.night.sources import required_missing
from nightlake.observe.events import Kind
from nightlake.runs.journal.ingest import FileRecord, FileState
from nightlake.storage import Stat, Storage, open_storage

S = FileState
IN_FLIGHT = 4  # uploads per worker kept in flight
CLUSTER_PASSES = 3  # passes over the planned files on a cluster: a lost batch's files get another
FOLLOW_TICK = 0.2  # seconds between two looks for newly planned files, when following
HTTPS_NO_PROGRESS = 30.0  # seconds an https upload request may go without a byte (`put_timeout`)
ROOT_NO_PROGRESS = 60.0  # and a root:// one: XrdCl counts a server's 30 s kXR_wait in it
HandOn = Callable[[list[FileRecord]], None]


class Uploader:
    """One pass over the planned files; `stopped()` tells it to take no new batch. With `follow`,
    passes go on while `follow()` is true, each handing on what it finished: a daemon journals
    files as they come, and they are uploaded (checked in place) as they are journaled."""

    def __init__(self, ctx: Context, hand_on: HandOn, stopped: Callable[[], bool],
                 follow: Callable[[], bool] | None = None):
        self.ctx, self.hand_on, self.stopped, self.follow = ctx, hand_on, stopped, follow
        self.streak = Streak()
        self._finished: list[FileRecord] = []
        self._finished_bytes = 0  # of the uploads not yet handed on

    def run(self) -> None:
        """Upload every planned file. Raises the failure that ends a `Streak` (the RSE is gone or
        refuses us): files in flight then stay `uploading`, for the next run to reconcile."""
        if self.ctx.cluster is not None:
            self._run_on_cluster()
            return
        work = self._check_in_place if self.ctx.options.in_place else self._put
        window: Window[FileRecord] = Window(self.ctx.pool, self.ctx.options.workers * IN_FLIGHT)
        try:
            while True:
                found = self._pass(window, work)
                if self.follow is None or self.stopped() or not self.follow():
                    break
                if not found:
                    time.sleep(FOLLOW_TICK)
        finally:
            window.cancel()

    def _pass(self, window: Window[FileRecord], work: Callable) -> int:
        """The planned files in batches through the window, then handed on; how many there were."""
        found = 0
        for batch in self._batches():
            if self.stopped():
                break
            found += len(batch)
            for record in self._prepare(batch):
                for finished in window.submit(work, record):
                    self._settle(*finished)
        for finished in window.drain():
            self._settle(*finished)
        self._hand_on()
        return found

    def _run_on_cluster(self) -> None:
        """Batches to the cluster's workers, two per worker in flight; then the files of the batches
        lost with a worker, settled and planned again, get another pass."""
        ctx = self.ctx
        in_flight = 2 * max(1, len(ctx.cluster.workers()))
        for _ in range(CLUSTER_PASSES):
            lost: list[FileRecord] = []
            for batch, outcome in ctx.cluster.map_batches(put_on_worker, self._prepared(), in_flight,
                                                          remote=ctx.remote, open_source=ctx.open_source):
                if isinstance(outcome, BaseException):
                    lost += batch
                    ctx.bus.emit(Kind.WORKER_LOST, files=len(batch), message=str(outcome)[:200])
                    continue
                self._settle_batch(batch, outcome)
            for record, stat in settle_uploads(ctx, lost) if lost else ():
                self._settle_result(record, stat.adler32)
            self._hand_on()
            if not lost or self.stopped():
                break

    def _prepared(self) -> Iterator[list[FileRecord]]:
        """The next batch, prepared only when the cluster has room for it."""
        for batch in self._batches():
            if self.stopped():
                return
            if prepared := self._prepare(batch):
                yield prepared

    def _settle_batch(self, batch: list[FileRecord], done: BatchDone) -> None:
        files = sum(not isinstance(r, Failure) for r in done.results)
        self.ctx.bus.emit(Kind.UPLOAD_DONE, files=files, bytes=done.bytes, rse=self.ctx.options.rse)
        self.ctx.bus.emit(Kind.WORKER_BATCH, worker=done.worker, files=files, bytes=done.bytes,
                          seconds=round(done.seconds, 3))
        for record, result in zip(batch, done.results):
            self._settle_result(record, result)

    def _batches(self) -> Iterator[list[FileRecord]]:
        """Planned files in batches bounded by count and by bytes (big files make small batches)."""
        limit = self.ctx.options.batch_bytes
        for batch in self.ctx.journal.batches(S.PLANNED, self.ctx.options.batch_files):
            start, size = 0, 0
            for i, record in enumerate(batch):
                size += record.bytes
                if size > limit and i > start:
                    yield batch[start:i]
                    start, size = i, record.bytes
            yield batch[start:]

    def _prepare(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Set aside files without required metadata, give the others their PFN, and journal the
        intent to upload them (in place there is no side effect, so no intent)."""
        ctx = self.ctx
        batch = self._quarantine_incomplete(batch)
        if not batch:
            return []
        pfns = ctx.pfn_of(batch)
        batch = [replace(r, pfn=pfns[f"{r.scope}:{r.name}"], rse=ctx.options.rse) for r in batch]
        if not ctx.options.in_place:
            ctx.journal.mark_each(S.UPLOADING, [{"id": r.id, "pfn": r.pfn, "rse": r.rse} for r in batch])
        return batch

    def _quarantine_incomplete(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Files missing required metadata keys are set aside with the reason, never uploaded."""
        required = self.ctx.options.required_meta
        if not required:
            return batch
        keep, bad = [], defaultdict(list)
        for record in batch:
            if missing := required_missing(record.meta, required):
                bad[", ".join(missing)].append(record)
            else:
                keep.append(record)
        for missing, records in bad.items():
            reason = f"missing required metadata: {missing}"
            self.ctx.journal.quarantine([r.id for r in records], reason)
            self.ctx.bus.emit(Kind.QUARANTINE, files=len(records), reason=reason)
        return keep

    def _settle(self, record: FileRecord, future: Future) -> None:
        try:
            result = future.result()
        except Exception as exc:  # classified, recorded as data
            result = exc
        self._settle_result(record, result)

    def _settle_result(self, record: FileRecord, result: str | BaseException | Failure) -> None:
        """A failure is recorded and the night goes on, unless the streak says the storage itself
        is gone."""
        if isinstance(result, Failure):
            result = result.exception()
        if isinstance(result, BaseException):
            if (bad := _bad_fits(result)) is not None:
                self.ctx.journal.quarantine([record.id], str(bad))
                self.ctx.bus.emit(Kind.QUARANTINE, files=1, reason=str(bad))
                return
            self.ctx.fail([record], result)
            self.streak.failure(result)
            return
        adler32 = result
        self.streak.success()
        self._finished.append(replace(record, adler32=adler32))
        self._finished_bytes += record.bytes
        if len(self._finished) >= self.ctx.options.batch_files or \
                self._finished_bytes >= self.ctx.options.batch_bytes:
            self._hand_on()

    def _hand_on(self) -> None:
        """Journal the outcome of a batch of uploads, then pass it to registration."""
        finished, ctx = self._finished, self.ctx
        if not finished:
            return
        ctx.journal.mark_each(S.UPLOADED, [{"id": r.id, "pfn": r.pfn, "rse": r.rse, "adler32": r.adler32}
                                           for r in finished])
        ctx.bus.emit(Kind.UPLOAD_BATCH, files=len(finished), bytes=sum(r.bytes for r in finished),
                     rse=ctx.options.rse, in_place=ctx.options.in_place)
        self.hand_on(list(finished))
        finished.clear()
        self._finished_bytes = 0

    def _put(self, record: FileRecord) -> str:
        ctx = self.ctx
        stored = ctx.on_storage(ctx.storage.put, record.pfn, ctx.open_source(record),
                                size=record.bytes, adler32=record.adler32)
        ctx.bus.emit(Kind.UPLOAD_DONE, files=1, bytes=stored.size, rse=ctx.options.rse)
        return stored.adler32

    def _check_in_place(self, record: FileRecord) -> str:
        """In place: registered with the storage's own adler32, a different file of the same size
        would look good, so the source is compared first. Its adler32 is then the storage's."""
        ctx = self.ctx
        stat = ctx.on_storage(ctx.storage.stat, record.pfn)
        if stat is None:
            raise FileNotFoundError(f"{record.pfn} is not on {ctx.options.rse}")
        if (refusal := self._differs_from_source(record, stat)) is not None:
            raise refusal
        ctx.bus.emit(Kind.UPLOAD_DONE, files=1, bytes=stat.size, rse=ctx.options.rse, in_place=True)
        return stat.adler32

    def _differs_from_source(self, record: FileRecord, stat: Stat) -> Exception | None:
        """Why a file on storage is not its source, or None: size first (cheap), then adler32, the
        journal's or else the source's computed now (no source journals one: uploads compute it
        on the way)."""
        where = f"{record.pfn} on {self.ctx.options.rse}"
        if stat.size != record.bytes:
            return ValueError(f"{where} has {stat.size} bytes, its source {record.source} {record.bytes}: "
                              f"not the same file")
        if stat.adler32 is None:
            return ValueError(f"{where}: the storage gives no adler32 to verify it against its source")
        try:
            expected = record.adler32 or self.ctx.source_adler32(record)
        except OSError as exc:
            return OSError(f"{record.source}: cannot read the source to verify {where} against it: "
                           f"{exc.strerror or exc}")
        if expected != stat.adler32:
            return ChecksumMismatch(f"{where} (source {record.source})", expected, stat.adler32)
        return None


def _bad_fits(exc: BaseException) -> BadChecksum | None:
    """The FITS integrity failure behind a failed put or in-place check (the storage layer and the
    retry policy wrap it), or None: such a file is quarantined, not failed, for no retry can fix it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BadChecksum):
            return exc
        seen.add(id(exc))
        exc = getattr(exc, "original", None) or exc.__cause__ or exc.__context__
    return None


@dataclass(frozen=True)
class RemoteStorage:
    """How a cluster worker opens the upload RSE's storage itself: a storage holds sessions and
    sockets, which cannot be sent, so each worker process opens its own, once."""

    rse: str
    protocol: dict
    rse_info: dict
    ca_cert: str | bool
    client_cert: str | None
    patience: float
    pool_size: int = IN_FLIGHT
    timeout: float = 120.0  # `put_timeout` of the protocol

    def open(self) -> Storage:
        """The worker's storage; a worker with an `X509_USER_PROXY` of its own (a batch job's
        delegated proxy) presents that one."""
        client_cert = os.environ.get("X509_USER_PROXY") or self.client_cert
        key = json.dumps([self.protocol, self.ca_cert, client_cert], sort_keys=True, default=str)
        with _OPENED_LOCK:
            if key not in _OPENED:
                _OPENED[key] = open_storage(self.protocol, ca_cert=self.ca_cert, client_cert=client_cert,
                                            pool_size=self.pool_size, timeout=self.timeout,
                                            rse_info=self.rse_info)
            return _OPENED[key]


def put_timeout(protocol: dict) -> float:
    """Seconds an upload's request may go without an answer before it fails, as a transient storage
    error that the policy retries. XRootD 5.5.3 (the lake's) now and then never answers one: over
    https a PUT or a part's checksum HEAD (its log says `ssl3_write_pending: bad write retry`),
    over root:// a part's checksum query, with no server thread working on it. Each such request
    used to wait 120 s, and a batch of 1,000 files waited for its slowest. An answer takes
    milliseconds, a part's checksum seconds; over root:// XrdCl counts a server's 30 s kXR_wait
    (`xrootd.chksum max` reached) in the timeout, hence twice that."""
    return HTTPS_NO_PROGRESS if protocol["scheme"] in ("https", "davs") else ROOT_NO_PROGRESS


_OPENED: dict[str, Storage] = {}  # in a worker process: the storages its batches share
_OPENED_LOCK = threading.Lock()


def put_on_worker(batch: list[FileRecord], remote: RemoteStorage, open_source: Any) -> BatchDone:
    """On a cluster worker: put and verify a batch (the streamed payloads are generated here, from
    the records), `remote.pool_size` at a time; each file's adler32, or its `Failure`."""
    storage = remote.open()
    policy = RetryPolicy(target=remote.rse, patience=remote.patience)

    def put(record: FileRecord) -> str:
        return policy.call(storage.put, record.pfn, open_source(record), size=record.bytes,
                           adler32=record.adler32).adler32
    return run_batch(put, batch, lambda r: r.bytes, remote.pool_size)
