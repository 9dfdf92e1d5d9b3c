"""The ingest pipeline: flow control between the stages, nothing else.

A run walks the journal, never a list in memory. It reconciles first (`reconcile`), creates the
datasets, finishes what an earlier run left between upload and done, then runs three stages joined
by bounded queues: upload (`upload.Uploader`, in this thread, with a pool of workers), register +
attach, and metadata + rules + closing (`register.Registrar`, each in a thread of its own with its
own Rucio client), so the server works on two batches at once while the next one uploads. At most
`queue_depth` batches wait between two stages, whatever the night.

Every side effect is bracketed in the journal (intent -> outcome, see `runs.journal.ingest`):
    planned -> uploading -> uploaded -> registering -> registered -> attached -> done
Re-running the same command therefore resumes, and re-running a finished run does nothing.

A dataset gets its rules and is closed as soon as all its files are done, so a rule on the upload
RSE is satisfied at once and rules on it stop growing; a last sweep at the end covers datasets
with failed files (rules yes, closing no: a re-run may still attach them).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.ingest.context import (
    Context,
    IngestOptions,
    PfnResolver,
    SourceOpener,
)
from nightlake.flows.ingest.reconcile import reconcile
from nightlake.flows.ingest.register import Registrar
from nightlake.flows.ingest.upload import Uploader
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.ingest import IngestJournal
from nightlake.storage import Storage

_STOP = object()


class Ingest:
    """One ingest run over a journal: reconcile, upload, register, set metadata, rule, close.

    `catalog` serves reconcile and the register stage; `metadata_catalog` (a second client:
    threads do not share one) the metadata stage. With `cluster` (and `remote`, how its workers
    open the storage) the uploads run on the cluster's workers."""

    def __init__(self, journal: IngestJournal, catalog: Catalog, storage: Storage, pfn_of: PfnResolver,
                 open_source: SourceOpener, options: IngestOptions, bus: EventBus | None = None,
                 storage_policy: RetryPolicy | None = None, metadata_catalog: Catalog | None = None,
                 cluster: Any = None, remote: Any = None):
        self._pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="upload")
        self.ctx = Context(journal, catalog, storage, pfn_of, open_source, options, bus or EventBus(),
                           storage_policy or RetryPolicy(target=options.rse), self._pool, cluster, remote)
        self.registrar = Registrar(self.ctx, catalog)
        self.finisher = Registrar(self.ctx, metadata_catalog or catalog, self.registrar.settling)
        self._stop = threading.Event()

    def run(self, requeue: bool = True, follow: Callable[[], bool] | None = None) -> None:
        """Bring every journaled file as far as it can go; failed files get another go if
        `requeue`; with `follow`, files journaled meanwhile too, while `follow()` is true (a
        daemon). Raises AuthFailure, or GaveUp when a service stays down: the run stops, and a
        re-run resumes."""
        ctx = self.ctx
        try:
            if requeue and (requeued := ctx.journal.requeue_failed()):
                ctx.bus.emit(Kind.RUN_REQUEUED, files=requeued)
            reconcile(ctx)
            self.registrar.create_datasets()
            self.registrar.leftovers()
            self._upload_and_register(follow)
            self.registrar.add_rules()
            if ctx.options.close_datasets:
                self.registrar.close_datasets()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _upload_and_register(self, follow: Callable[[], bool] | None = None) -> None:
        """The three stages, the two catalog ones in `catalog_lanes` threads each; the first error
        in any of them stops the others and is raised here."""
        ctx = self.ctx
        to_register: queue.Queue = queue.Queue(maxsize=ctx.options.queue_depth)
        to_finish: queue.Queue = queue.Queue(maxsize=ctx.options.queue_depth)
        errors: list[BaseException] = []
        registrars, finishers = self._lanes(self.registrar), self._lanes(self.finisher)

        def lane(name: str, inbox: queue.Queue, step: Callable, outbox: queue.Queue | None) -> threading.Thread:
            return threading.Thread(target=self._stage, name=name, args=(name, inbox, step, outbox, errors))
        registering = [lane("register", to_register, lambda b, r=r: r.attach(r.register(b)), to_finish)
                       for r in registrars]
        finishing = [lane("metadata", to_finish, f.finish, None) for f in finishers]
        for stage in registering + finishing:
            stage.start()
        try:
            Uploader(ctx, lambda batch: self._hand_on(to_register, "register", batch), self._stop.is_set,
                     follow).run()
        finally:
            for stages, inbox in ((registering, to_register), (finishing, to_finish)):
                for _ in stages:
                    inbox.put(_STOP)
                for stage in stages:
                    stage.join()
        if errors:
            raise errors[0]

    def _lanes(self, first: Registrar) -> list[Registrar]:
        """`catalog_lanes` registrars for a stage: the first one's, and twins of its catalog. They
        share one lock for a dataset's rules and closing, so two lanes never do them twice."""
        twins = [Registrar(self.ctx, first.catalog.twin(), first.settling)
                 for _ in range(self.ctx.options.catalog_lanes - 1)]
        return [first, *twins]

    def _hand_on(self, outbox: queue.Queue, stage: str, batch: list) -> None:
        """Queue a batch for `stage`; how many wait shows which stage holds the night back."""
        outbox.put(batch)
        self.ctx.bus.emit(Kind.QUEUE_DEPTH, stage=stage, depth=outbox.qsize())

    def _stage(self, name: str, inbox: queue.Queue, step: Callable, outbox: queue.Queue | None,
               errors: list[BaseException]) -> None:
        """Apply `step` to each batch from `inbox`, pass its result on; after an error, only drain,
        so that no stage ever blocks on a full queue. A lane ends at its own `_STOP`."""
        while (batch := inbox.get()) is not _STOP:
            self.ctx.bus.emit(Kind.QUEUE_DEPTH, stage=name, depth=inbox.qsize())
            if errors:
                continue
            try:
                result = step(batch)
                if outbox is not None and result:
                    self._hand_on(outbox, "metadata", result)
            except BaseException as exc:  # surfaced by the uploading thread
                errors.append(exc)
                self._stop.set()
