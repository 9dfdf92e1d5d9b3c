"""The ingest pipeline: flow control between sources, storage, catalog and journal.

A run walks the journal, never a list in memory: files are taken `batch_files` at a time in the
`planned` state, uploaded by a bounded pool of worker threads, and handed through a bounded queue
to one registration thread that makes the bulk catalog calls. Uploads of batch k+1 overlap the
registration of batch k; at most `queue_depth` + 1 batches are ever in flight, whatever the night.

Every side effect is bracketed in the journal (intent → outcome, see `journal`):
    planned → uploading → uploaded → registering → registered → attached → done
and a run always starts by reconciling what a crash may have left uncertain, against storage
(`uploading`) and against Rucio (`registering`), before it does anything new. Re-running the
same command therefore resumes, and re-running a finished run does nothing.

Rules go on datasets once their files are attached, so a rule on the upload RSE is satisfied at
once; a dataset is closed when all its files are done, so rules on it stop growing.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from nightlake.catalog.client import Catalog, Rejected
from nightlake.observe.events import EventBus
from nightlake.catalog.failures import ChecksumMismatch, ErrorClass, classify
from nightlake.runs.journal.ingest import DatasetState, FileRecord, FileState, IngestJournal, RuleState
from nightlake.catalog.retry import CallFailed, RetryPolicy
from nightlake.catalog.rules import RulePolicy, ensure_rule
from nightlake.night.sources import required_missing
from nightlake.storage import PART_SUFFIX, Stat, Storage, adler

S = FileState
_STOP = object()
# Files in a row, each failed after its own retries, that stop the run: storage refusing credentials
# (one refusal may be one path's permissions), or storage that stays down (twice the upload window:
# every transfer in flight failed, and the next ones too). A dead RSE then costs minutes, not the night.
STREAKS = {ErrorClass.AUTH: 5, ErrorClass.TRANSIENT_STORAGE: 64}


@dataclass(frozen=True)
class IngestOptions:
    """How to run an ingest; the defaults suit the local lake and a 2-core client."""

    rse: str
    workers: int = 8
    batch_files: int = 1000
    batch_bytes: int = 16 << 30
    queue_depth: int = 2
    required_meta: tuple[str, ...] = ()
    close_datasets: bool = True
    in_place: bool = False


class Ingest:
    """One ingest run over a journal: reconcile, upload, register, rule, close."""

    def __init__(self, journal: IngestJournal, catalog: Catalog, storage: Storage,
                 pfn_of: Callable[[list[FileRecord]], dict[str, str]], open_source: Callable,
                 options: IngestOptions, bus: EventBus | None = None,
                 storage_policy: RetryPolicy | None = None, describer: Catalog | None = None):
        self.journal, self.catalog, self.storage = journal, catalog, storage
        self.describer = describer or catalog  # the metadata stage's own client (threads do not share one)
        self.pfn_of, self.open_source, self.options = pfn_of, open_source, options
        self.bus = bus or EventBus()
        self.storage_policy = storage_policy or RetryPolicy(target=options.rse)
        self._pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="upload")
        self._stop = threading.Event()
        self._streak: tuple[ErrorClass | None, int] = (None, 0)  # the class of the last failures in a row
        self._finished_bytes = 0  # bytes of the uploads not yet handed on (a batch closes at batch_bytes)

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Bring every journaled file as far as it can go. Raises AuthFailure, or GaveUp when the
        storage stays down (`STREAKS`): the run stops, and a re-run resumes."""
        try:
            requeued = self.journal.requeue_failed()
            if requeued:
                self.bus.emit("run.requeued", files=requeued)
            self.reconcile()
            self.create_datasets()
            self._register_leftovers()
            self._upload_and_register()
            self.add_rules()
            if self.options.close_datasets:
                self.close_datasets()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # --- reconcile --------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Settle the states a crash may have left uncertain, in bulk, before anything new."""
        for batch in self.journal.batches(S.UPLOADING, self.options.batch_files):
            stats = list(self._pool.map(lambda r: self._call(self.storage.stat, r.pfn), batch))
            complete, redo = [], []
            for record, stat in zip(batch, stats):
                (complete if self._is_complete(record, stat) else redo).append((record, stat))
            self._discard_parts([r for r, _ in complete + redo])
            self._discard_partial([(r, s) for r, s in redo if s is not None])
            self.journal.mark_each(S.UPLOADED, [{"id": r.id, "adler32": s.adler32} for r, s in complete])
            self.journal.mark([r.id for r, _ in redo], S.PLANNED)
            self.bus.emit("reconcile.storage", uploaded=len(complete), replanned=len(redo))
        for batch in self.journal.batches(S.REGISTERING, self.catalog.batch_size):
            known = self.catalog.replicas_on(self.options.rse, [(r.scope, r.name) for r in batch])
            self.journal.mark([r.id for r in batch if (r.scope, r.name) in known], S.REGISTERED)
            self.journal.mark([r.id for r in batch if (r.scope, r.name) not in known], S.UPLOADED)
            self.bus.emit("reconcile.catalog", registered=sum((r.scope, r.name) in known for r in batch),
                          uploaded=sum((r.scope, r.name) not in known for r in batch))
        self._recheck_uploaded()

    def _recheck_uploaded(self) -> None:
        """Files an earlier run uploaded but did not register are checked on storage again: bytes
        altered meanwhile must never be registered as good. Copies are replaced; in place, the
        storage holds the user's only copy, so the file fails instead."""
        for batch in self.journal.batches(S.UPLOADED, self.options.batch_files):
            stats = list(self._pool.map(lambda r: self._call(self.storage.stat, r.pfn), batch))
            bad = [(r, s) for r, s in zip(batch, stats)
                   if s is None or (s.size, s.adler32) != (r.bytes, r.adler32)]
            if self.options.in_place:
                for record, stat in bad:
                    self._fail([record], ValueError(f"{record.pfn} changed on storage before registration: "
                                                    f"{stat.size if stat else 'absent'} bytes, adler32 "
                                                    f"{stat.adler32 if stat else '-'}; expected {record.adler32}"))
                continue
            self._discard_partial([(r, s) for r, s in bad if s is not None])
            self.journal.mark([r.id for r, _ in bad], S.PLANNED)
            if bad:
                self.bus.emit("reconcile.storage", uploaded=0, replanned=len(bad), changed=True)

    def _is_complete(self, record: FileRecord, stat: Stat | None) -> bool:
        """A file found under its final name counts as uploaded only with the right size and an
        adler32 that matches the source's (computed now for a local file when needed)."""
        if stat is None or stat.size != record.bytes or stat.adler32 is None:
            return False
        expected = record.adler32 or self._source_adler32(record)
        return expected == stat.adler32

    def _source_adler32(self, record: FileRecord) -> str | None:
        """The adler32 the source's bytes have, or None when the source cannot be read."""
        try:
            return self._read_source_adler32(record)
        except OSError:
            return None

    def _read_source_adler32(self, record: FileRecord) -> str:
        """Read from a local file, computed for a payload; raises OSError."""
        source = self.open_source(record)
        if isinstance(source, Path):
            return adler.file_adler32(source)[1]
        counter = adler.Adler32Counter(source())
        for _ in counter:
            pass
        return counter.adler32

    def _discard_parts(self, records: Iterable[FileRecord]) -> None:
        """Temporary objects of interrupted uploads would be dark data: delete them."""
        list(self._pool.map(lambda r: self._quietly(self.storage.delete, r.pfn + PART_SUFFIX), records))

    def _discard_partial(self, found: list[tuple[FileRecord, Stat]]) -> None:
        list(self._pool.map(lambda rs: self._quietly(self.storage.delete, rs[0].pfn), found))

    # --- datasets ---------------------------------------------------------------------------------

    def create_datasets(self) -> None:
        """Each dataset is created once per run, in bulk, before any file is attached."""
        planned = [(scope, name) for scope, name, _ in self.journal.datasets(DatasetState.PLANNED)]
        if not planned:
            return
        rejected = self.catalog.add_datasets(planned)
        if rejected:
            raise rejected[0].failure
        self.journal.mark_datasets(planned, DatasetState.CREATED)
        self.bus.emit("datasets.created", datasets=len(planned))

    # --- upload -----------------------------------------------------------------------------------

    def _upload_and_register(self) -> None:
        """Three stages joined by bounded queues: upload (this thread), register + attach, and
        describe (metadata), each catalog stage in its own thread with its own Rucio client, so the
        server works on two batches at once while the next one uploads."""
        to_register: queue.Queue = queue.Queue(maxsize=self.options.queue_depth)
        to_describe: queue.Queue = queue.Queue(maxsize=self.options.queue_depth)
        errors: list[BaseException] = []
        stages = [threading.Thread(target=self._stage, name=name, args=(inbox, step, outbox, errors))
                  for name, inbox, step, outbox in (
                      ("register", to_register, lambda b: self.attach(self.register(b)), to_describe),
                      ("describe", to_describe, self._describe, None))]
        for stage in stages:
            stage.start()
        try:
            self._upload_all(to_register.put)
        finally:
            to_register.put(_STOP)
            for stage in stages:
                stage.join()
        if errors:
            raise errors[0]

    def _stage(self, inbox: queue.Queue, step: Callable, outbox: queue.Queue | None,
               errors: list[BaseException]) -> None:
        """Apply `step` to each batch from `inbox`, pass its result on; after an error, only drain,
        so that no stage ever blocks on a full queue."""
        while (batch := inbox.get()) is not _STOP:
            if errors:
                continue
            try:
                result = step(batch)
                if outbox is not None and result:
                    outbox.put(result)
            except BaseException as exc:  # surfaced by the uploading thread
                errors.append(exc)
                self._stop.set()
        if outbox is not None:
            outbox.put(_STOP)

    def _upload_batches(self):
        """Planned files in batches bounded by count and by bytes (big files make small batches)."""
        for batch in self.journal.batches(S.PLANNED, self.options.batch_files):
            start, size = 0, 0
            for i, record in enumerate(batch):
                size += record.bytes
                if size > self.options.batch_bytes and i > start:
                    yield batch[start:i]
                    start, size = i, record.bytes
            yield batch[start:]

    def _upload_all(self, hand_on: Callable[[list[FileRecord]], None]) -> None:
        """Keep up to 4 uploads per worker in flight, across batch boundaries, so that one slow
        transfer delays only its own file; hand finished files on in batches of `batch_files`."""
        work = self._check_in_place if self.options.in_place else self._put
        window = _Window(self._pool, self.options.workers * 4)
        finished: list[FileRecord] = []
        for batch in self._upload_batches():
            if self._stop.is_set():
                break
            for record in self._prepare(batch):
                for outcome in window.submit(work, record):
                    self._settle_upload(*outcome, finished, hand_on)
        for outcome in window.drain():
            self._settle_upload(*outcome, finished, hand_on)
        self._hand_on(finished, hand_on)

    def _prepare(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Set aside files without required metadata, give the others their PFN, and journal the
        intent to upload them (in place there is no side effect, so no intent)."""
        batch = self._quarantine_incomplete(batch)
        if not batch:
            return []
        pfns = self.pfn_of(batch)
        batch = [replace(r, pfn=pfns[f"{r.scope}:{r.name}"], rse=self.options.rse) for r in batch]
        if not self.options.in_place:
            self.journal.mark_each(S.UPLOADING, [{"id": r.id, "pfn": r.pfn, "rse": r.rse} for r in batch])
        return batch

    def _settle_upload(self, record: FileRecord, future: Future, finished: list[FileRecord],
                       hand_on: Callable[[list[FileRecord]], None]) -> None:
        """A failure is recorded and the night goes on, unless `STREAKS` says the storage itself is
        gone (files in flight then stay `uploading`, for the next run to reconcile)."""
        try:
            finished.append(replace(record, adler32=future.result()))
            self._finished_bytes += record.bytes
            self._streak = (None, 0)
        except CallFailed as exc:
            self._fail([record], exc)
            self._count_streak(exc)
            return
        except Exception as exc:  # classified, recorded as data
            self._fail([record], exc)
            self._streak = (None, 0)
            return
        if len(finished) >= self.options.batch_files or self._finished_bytes >= self.options.batch_bytes:
            self._hand_on(finished, hand_on)

    def _count_streak(self, exc: CallFailed) -> None:
        """Raise `exc` (stopping the run) when it ends a streak of `STREAKS` failures of its class."""
        error_class = exc.classified.error_class
        count = self._streak[1] + 1 if self._streak[0] is error_class else 1
        self._streak = (error_class, count)
        if count >= STREAKS.get(error_class, float("inf")):
            self._stop.set()
            raise exc

    def _hand_on(self, finished: list[FileRecord], hand_on: Callable[[list[FileRecord]], None]) -> None:
        """Journal the outcome of a batch of uploads, then pass it to registration."""
        if not finished:
            return
        self.journal.mark_each(S.UPLOADED, [{"id": r.id, "pfn": r.pfn, "rse": r.rse, "adler32": r.adler32}
                                            for r in finished])
        self.bus.emit("upload.batch", files=len(finished), bytes=sum(r.bytes for r in finished),
                      rse=self.options.rse, in_place=self.options.in_place)
        hand_on(list(finished))
        finished.clear()
        self._finished_bytes = 0

    def _put(self, record: FileRecord) -> str:
        stored = self._call(self.storage.put, record.pfn, self.open_source(record),
                            size=record.bytes, adler32=record.adler32)
        self.bus.emit("upload.done", files=1, bytes=stored.size, rse=self.options.rse)
        return stored.adler32

    def _check_in_place(self, record: FileRecord) -> str:
        """In place: the file on storage becomes the replica without a copy, so it must be the
        source's very bytes, not merely a file of that size: registered with the storage's own
        adler32, a different file would look good. Its adler32 is then the storage's."""
        stat = self._call(self.storage.stat, record.pfn)
        if stat is None:
            raise FileNotFoundError(f"{record.pfn} is not on {self.options.rse}")
        if (refusal := self._differs_from_source(record, stat)) is not None:
            raise refusal
        self.bus.emit("upload.done", files=1, bytes=stat.size, rse=self.options.rse, in_place=True)
        return stat.adler32

    def _differs_from_source(self, record: FileRecord, stat: Stat) -> Exception | None:
        """Why a file on storage is not its source, or None: size first (cheap), then adler32, the
        journal's or else the source's computed now (no source journals one: uploads compute it
        on the way)."""
        where = f"{record.pfn} on {self.options.rse}"
        if stat.size != record.bytes:
            return ValueError(f"{where} has {stat.size} bytes, its source {record.source} {record.bytes}: "
                              f"not the same file")
        if stat.adler32 is None:
            return ValueError(f"{where}: the storage gives no adler32 to verify it against its source")
        try:
            expected = record.adler32 or self._read_source_adler32(record)
        except OSError as exc:
            return OSError(f"{record.source}: cannot read the source to verify {where} against it: "
                           f"{exc.strerror or exc}")
        if expected != stat.adler32:
            return ChecksumMismatch(f"{where} (source {record.source})", expected, stat.adler32)
        return None

    def _quarantine_incomplete(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Files missing required metadata keys are set aside with the reason, never uploaded."""
        required = self.options.required_meta
        if not required:
            return batch
        keep, bad = [], defaultdict(list)
        for record in batch:
            missing = required_missing(record.meta, required)
            if missing:
                bad[", ".join(missing)].append(record)
            else:
                keep.append(record)
        for missing, records in bad.items():
            self.journal.quarantine([r.id for r in records], f"missing required metadata: {missing}")
            self.bus.emit("quarantine", files=len(records), reason=f"missing required metadata: {missing}")
        return keep

    # --- registration -----------------------------------------------------------------------------

    def _register_leftovers(self) -> None:
        """Files a previous run left between upload and done continue where they stopped."""
        steps = {S.UPLOADED: lambda b: self.set_metadata(self.attach(self.register(b))),
                 S.REGISTERED: lambda b: self.set_metadata(self.attach(b)), S.ATTACHED: self.set_metadata}
        for state, step in steps.items():
            for batch in self.journal.batches(state, self.catalog.batch_size):
                step(batch)

    def register(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Add replicas in bulk: pre-filter what Rucio already has, journal the intent, call."""
        rse = self.options.rse
        known = self.catalog.replicas_on(rse, [(r.scope, r.name) for r in batch])
        clash = [r for r in batch if (r.scope, r.name) in known and
                 (known[(r.scope, r.name)]["bytes"], known[(r.scope, r.name)]["adler32"]) != (r.bytes, r.adler32)]
        if clash:
            self._fail(clash, ValueError(f"already registered on {rse} with another size or adler32"))
        batch = [r for r in batch if r not in clash]
        new = [r for r in batch if (r.scope, r.name) not in known]
        self.journal.mark([r.id for r in batch], S.REGISTERING)
        rejected = self.catalog.add_replicas(rse, [
            {"scope": r.scope, "name": r.name, "bytes": r.bytes, "adler32": r.adler32} for r in new])
        registered = self._settle(batch, rejected, S.REGISTERED)
        self.bus.emit("register.batch", files=len(registered), calls=1 + bool(new), rse=rse)
        return registered

    def attach(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Attach files to their datasets: one bulk call per dataset present in the batch."""
        by_dataset: dict[tuple[str, str], list[FileRecord]] = defaultdict(list)
        for record in batch:
            by_dataset[(record.scope, record.dataset)].append(record)
        attached: list[FileRecord] = []
        for dataset, records in by_dataset.items():
            rejected = self.catalog.attach(dataset, [(r.scope, r.name) for r in records])
            attached += self._settle(records, rejected, S.ATTACHED)
        self.bus.emit("attach.batch", files=len(attached), calls=len(by_dataset))
        return attached

    def set_metadata(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Describe the files (metadata in bulk); the last step, so they are done."""
        rejected = self.describer.set_metadata([{"scope": r.scope, "name": r.name, "meta": r.meta} for r in batch])
        done = self._settle(batch, rejected, S.DONE)
        self.bus.emit("done.batch", files=len(done), bytes=sum(r.bytes for r in done))
        return done

    def _settle(self, batch: list[FileRecord], rejected: list[Rejected], state: FileState) -> list[FileRecord]:
        """Fail the rejected items, move the others on; return the ones that moved."""
        bad = {(x.item["scope"], x.item["name"]): x.failure for x in rejected}
        for did, failure in bad.items():
            self._fail([r for r in batch if (r.scope, r.name) == did], failure)
        good = [r for r in batch if (r.scope, r.name) not in bad]
        self.journal.mark([r.id for r in good], state)
        return good

    # --- rules and datasets -----------------------------------------------------------------------

    def _describe(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Metadata for a batch; then the datasets it completed get their rules and are closed at
        once, while the rest of the night uploads, instead of all of them after the last upload."""
        done = self.set_metadata(batch)
        for dataset in sorted(self.journal.settled_datasets({(r.scope, r.dataset) for r in batch})):
            self.add_rules(self.describer, {dataset})
            if self.options.close_datasets:
                self.close_datasets(self.describer, {dataset})
        return done

    def add_rules(self, catalog: Catalog | None = None, datasets: set[tuple[str, str]] | None = None) -> None:
        """One rule per (dataset, policy), looked up before it is added so a re-run adds none."""
        catalog = catalog or self.catalog
        for rule in self.journal.rules(RuleState.PLANNED):
            dataset = (rule["scope"], rule["dataset"])
            if datasets is not None and dataset not in datasets:
                continue
            rule_id, _ = ensure_rule(catalog, dataset, RulePolicy(rule["rse_expression"], rule["copies"],
                                                                  rule["lifetime"], rule["activity"]))
            self.journal.mark_rule(*dataset, rule["rse_expression"], rule_id)
            self.bus.emit("rule.added", dataset=f"{dataset[0]}:{dataset[1]}", rule_id=rule_id,
                          rse_expression=rule["rse_expression"])

    def close_datasets(self, catalog: Catalog | None = None, datasets: set[tuple[str, str]] | None = None) -> None:
        """Close the datasets whose files are all done (or set aside): nothing more will join them."""
        catalog = catalog or self.catalog
        created = {(scope, name) for scope, name, _ in self.journal.datasets(DatasetState.CREATED)}
        for dataset in sorted(self.journal.settled_datasets(created if datasets is None else created & datasets)):
            catalog.close(dataset)
            self.journal.mark_datasets([dataset], DatasetState.CLOSED)
            self.bus.emit("dataset.closed", dataset=f"{dataset[0]}:{dataset[1]}")

    # --- helpers ----------------------------------------------------------------------------------

    def _call(self, fn: Callable, *args, **kwargs):
        return self.storage_policy.call(fn, *args, **kwargs)

    @staticmethod
    def _quietly(fn: Callable, *args) -> None:
        with contextlib.suppress(Exception):
            fn(*args)

    def _fail(self, records: list[FileRecord], exc: BaseException) -> None:
        """Record a failure with its class and original message (errors are data)."""
        classified = exc.classified if isinstance(exc, CallFailed) else classify(exc)
        self.journal.fail(records, classified.error_class, classified.message)
        self.bus.emit("file.failed", files=len(records), error_class=classified.error_class.value,
                      message=classified.message[:500])


class _Window:
    """At most `size` calls in flight on a pool; finished ones are handed back as they complete."""

    def __init__(self, pool: ThreadPoolExecutor, size: int):
        self._pool, self._size = pool, size
        self._futures: dict[Future, FileRecord] = {}

    def submit(self, work: Callable[[FileRecord], str], record: FileRecord) -> Iterator[tuple[FileRecord, Future]]:
        """Wait for room (yielding what finishes meanwhile), then start `work(record)`."""
        while len(self._futures) >= self._size:
            yield from self._finished()
        self._futures[self._pool.submit(work, record)] = record

    def drain(self) -> Iterator[tuple[FileRecord, Future]]:
        while self._futures:
            yield from self._finished()

    def _finished(self) -> Iterator[tuple[FileRecord, Future]]:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        for future in done:
            yield self._futures.pop(future), future
