"""Retrieve: download files from the lake to `OUT/<scope>/<name>`, every file verified, journaled.

The life cycle mirrors ingest: the selection (DIDs, or DID metadata filters) is streamed from
Rucio into the download journal with each file's replica, size and adler32 *before* any byte
moves; then the journal is walked in batches and a pool of workers downloads through the same
storage layer. A file reaches its final name only after two checks: the storage's own adler32
(`Storage.get`) and the catalog's (here), so a replica corrupted on disk is caught even when the
storage computes its checksum from the corrupted bytes. A mismatch is retried once, then the
file fails (PERMANENT); the others go on. Re-running the same command resumes (see
`retrieve_journal`): done files still present with the right size are skipped, interrupted
ones are checked locally and re-downloaded only if incomplete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from nightlake.catalog.client import BATCH_SIZE, Catalog
from nightlake import BadInput
from nightlake.observe.events import EventBus, EventLog
from nightlake.catalog.failures import ChecksumMismatch, classify
from nightlake.runs.journal.download import D, Download, DownloadJournal
from nightlake.catalog.retry import AuthFailure, GaveUp, RetryPolicy
from nightlake.runs.rundir import RunDir, write_summary
from nightlake.storage import PART_SUFFIX, Storage, adler, open_storage, tls_from_rucio_config

SCHEMES = ("https", "davs", "root", "file")  # what the storage layer speaks natively
STAGING_SUFFIX = ".nightlake-get"
LIVE_ONLY = frozenset({"download.done"})  # per-file events feed the display, not the event log
JOURNAL_NAME = "retrieve.sqlite"
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class RetrieveRequest:
    """Everything the command line asked for; `description()` is what makes a re-run a resume."""

    out: Path
    run: Path
    dids: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()
    scope: str | None = None
    rse: str | None = None  # RSE expression the replicas must match
    from_rse: str | None = None  # preferred RSE when it has a replica
    workers: int = 8
    batch_files: int = 1000
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    def description(self) -> dict[str, Any]:
        return {"command": "retrieve", "dids": list(self.dids), "filters": dict(self.filters),
                "scope": self.scope, "out": str(self.out.absolute()), "rse": self.rse, "from_rse": self.from_rse}


def parse_filter(text: str) -> tuple[str, str]:
    """`KEY=VALUE` as Rucio's DID metadata filter takes it (KEY may carry Rucio's `.gte`-style suffix)."""
    key, sep, value = text.partition("=")
    if not sep or not _FILTER_KEY.match(key.strip()) or not value.strip():
        raise BadInput(f"--filter {text!r}: expected KEY=VALUE, e.g. telescope=LST-1")
    return key.strip(), value.strip()


def parse_did(text: str) -> tuple[str, str]:
    scope, sep, name = text.partition(":")
    if not sep or not scope or not name:
        raise BadInput(f"{text!r}: expected a DID as SCOPE:NAME")
    return scope, name


def run_retrieve(request: RetrieveRequest, bus: EventBus) -> dict[str, Any]:
    """Run (or resume) a retrieve; return its summary (also written to RUNDIR/summary.json)."""
    _check(request)
    run = RunDir(request.run)
    started = time.time()
    catalog = Catalog()
    types = did_types(request, catalog)
    created, existed = False, run.path.exists()
    try:
        with _open_journal(run, request.description()) as journal, EventLog(run.events) as log:
            created = not journal.run_meta().get("planned")
            bus.subscribe(lambda event: event.kind in LIVE_ONLY or log(event))
            if created:
                _journal_selection(journal, request, catalog, types, bus)
            created = False
            return _download_all(journal, run, request, started, bus)
    except BadInput:
        if created:  # a selection Rucio refuses or that matches nothing leaves nothing behind
            _discard(run, keep_directory=existed)
        raise


def _download_all(journal: DownloadJournal, run: RunDir, request: RetrieveRequest, started: float,
                  bus: EventBus) -> dict[str, Any]:
    storages = Storages(request.workers)
    counts = journal.counts()
    bus.emit("run.start", files=sum(counts.values()), done=counts[D.DONE])
    try:
        Retrieve(journal, storages, request, bus).run()
    finally:
        storages.close()
        summary = summarize(journal, request.out, started)
        write_summary(run, summary)
        bus.emit("run.end", complete=summary["complete"], failed=summary["files"]["failed"])
    return summary


def _discard(run: RunDir, keep_directory: bool) -> None:
    for name in (JOURNAL_NAME, JOURNAL_NAME + "-wal", JOURNAL_NAME + "-shm", run.description.name, run.events.name):
        (run.path / name).unlink(missing_ok=True)
    if not keep_directory:
        with contextlib.suppress(OSError):
            run.path.rmdir()


def _check(request: RetrieveRequest) -> None:
    if bool(request.dids) == bool(request.filters):
        raise BadInput("select files with DIDs (SCOPE:NAME ...) or with --filter KEY=VALUE, not both or neither")
    if request.filters and not request.scope:
        raise BadInput("--filter needs --scope SCOPE")
    for did in request.dids:
        parse_did(did)


def _open_journal(run: RunDir, description: dict[str, Any]) -> DownloadJournal:
    """The run's journal: the existing one if `description` is the same retrieve, else a new one."""
    path = run.path / JOURNAL_NAME
    if path.exists():
        saved = json.loads(run.description.read_text())
        if saved != description:
            changed = next((k for k in description if saved.get(k) != description[k]), "command")
            raise BadInput(f"{run.path} holds another retrieve ({changed}: {saved.get(changed)!r}, "
                           f"now {description[changed]!r}); use a new --run directory")
        return DownloadJournal.open(path)
    if run.path.exists() and any(run.path.iterdir()):
        raise BadInput(f"{run.path} is not empty and holds no retrieve run; use a new --run directory")
    run.path.mkdir(parents=True, exist_ok=True)
    run.description.write_text(json.dumps(description, indent=2) + "\n")
    return DownloadJournal.create(path, {"description": description})


# --- selection → journal --------------------------------------------------------------------------

def _journal_selection(journal: DownloadJournal, request: RetrieveRequest, catalog: Catalog,
                       types: dict[tuple[str, str], str], bus: EventBus) -> None:
    """Stream the selected files, 1000 at a time, through `list_replicas` into the journal."""
    added = 0
    try:
        files = _selected_dids(types, catalog) if request.dids else _selected_by_filter(request, catalog)
        while chunk := list(islice(files, BATCH_SIZE)):
            added += journal.add_files(_with_replicas(catalog, chunk, request))
    except GaveUp as failure:
        if failure.classified.error_class.transient:
            raise
        raise BadInput(f"Rucio refused the selection: {failure.classified.message}") from None
    if not sum(journal.counts().values()):
        raise BadInput("the selection matches no files")
    journal.set_meta(planned=True)
    bus.emit("run.planned", files=added)


def did_types(request: RetrieveRequest, catalog: Catalog) -> dict[tuple[str, str], str]:
    """{did: FILE | DATASET | CONTAINER} of the named DIDs, checked before the run directory is
    touched: an unknown DID is bad input and changes nothing."""
    dids = [parse_did(d) for d in request.dids]
    types = {}
    for start in range(0, len(dids), BATCH_SIZE):
        chunk = [{"scope": s, "name": n} for s, n in dids[start:start + BATCH_SIZE]]
        for meta in catalog.call(lambda c=chunk: list(catalog.client.get_metadata_bulk(c))):
            types[(meta["scope"], meta["name"])] = meta["did_type"]
    if missing := [f"{s}:{n}" for s, n in dids if (s, n) not in types]:
        raise BadInput(f"unknown DID(s): {', '.join(missing[:5])}")
    return types


def _selected_dids(types: dict[tuple[str, str], str], catalog: Catalog) -> Iterator[dict]:
    """Files named directly, then the files of the named datasets/containers (`bulk_list_files`
    expands containers too)."""
    yield from ({"scope": s, "name": n} for (s, n), kind in types.items() if kind == "FILE")
    collections = [{"scope": s, "name": n} for (s, n), kind in types.items() if kind != "FILE"]
    for start in range(0, len(collections), BATCH_SIZE):
        yield from catalog.call(catalog.client.bulk_list_files, collections[start:start + BATCH_SIZE])


def _selected_by_filter(request: RetrieveRequest, catalog: Catalog) -> Iterator[dict]:
    """Files whose DID metadata matches every filter (Rucio ANDs the keys of one filter dict)."""
    names = catalog.call(catalog.client.list_dids, request.scope, dict(request.filters), did_type="file")
    return ({"scope": request.scope, "name": name} for name in names)


def _with_replicas(catalog: Catalog, files: list[dict], request: RetrieveRequest) -> Iterator[dict]:
    """One `list_replicas` call for ≤1000 files → journal rows; a file with no usable replica is
    journaled with no PFN (it fails, listed, when its batch comes)."""
    dids = [{"scope": f["scope"], "name": f["name"]} for f in files]
    replicas = catalog.call(lambda: list(catalog.client.list_replicas(
        dids, schemes=list(SCHEMES), rse_expression=request.rse, resolve_archives=False)))
    by_did = {(r["scope"], r["name"]): r for r in replicas}
    for f in files:
        replica = by_did.get((f["scope"], f["name"]), f)
        rse, pfn = choose_replica(replica, request.from_rse)
        yield {"scope": f["scope"], "name": f["name"], "bytes": replica.get("bytes") or 0,
               "adler32": replica.get("adler32"), "rse": rse, "pfn": pfn}


def choose_replica(replica: dict, from_rse: str | None) -> tuple[str | None, str | None]:
    """(rse, pfn): on `from_rse` when it has one, else any; within an RSE, Rucio's protocol priority."""
    pfns = [(meta["rse"], meta.get("priority", 0), pfn) for pfn, meta in (replica.get("pfns") or {}).items()
            if pfn.split(":", 1)[0] in SCHEMES]
    preferred = [p for p in pfns if p[0] == from_rse]
    if not (preferred or pfns):
        return None, None
    rse, _, pfn = min(preferred or pfns)
    return rse, pfn


# --- download -------------------------------------------------------------------------------------

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
                ca_cert, client_cert = tls_from_rucio_config() if scheme != "file" else (True, None)
                self._open[scheme] = open_storage({"scheme": scheme}, ca_cert=ca_cert, client_cert=client_cert,
                                                  pool_size=self._pool_size)
            return self._open[scheme]

    def close(self) -> None:
        for storage in self._open.values():
            storage.close()


def destination(out: Path, record: Download) -> Path:
    """`OUT/<scope>/<name>`, the layout of `rucio download`; a name may not climb out of OUT."""
    if ".." in Path(record.name).parts or record.name.startswith("/"):
        raise ValueError(f"{record.scope}:{record.name}: name would be written outside {out}")
    return out / record.scope / record.name


def _staging(dest: Path) -> Path:
    return dest.with_name(dest.name + STAGING_SUFFIX)


class Retrieve:
    """One retrieve run over a journal: requeue, reconcile, download in batches."""

    def __init__(self, journal: DownloadJournal, storages: Storages, request: RetrieveRequest, bus: EventBus):
        self.journal, self.storages, self.request, self.bus = journal, storages, request, bus
        self.out = request.out

    def run(self) -> None:
        """Bring every journaled file to `done` or `failed`. Raises AuthFailure (stop at once)."""
        if requeued := self.journal.requeue_failed():
            self.bus.emit("run.requeued", files=requeued)
        self.reconcile()
        with ThreadPoolExecutor(self.request.workers, thread_name_prefix="download") as pool:
            for batch in self.journal.batches(D.PLANNED, self.request.batch_files):
                self._download(pool, batch)

    def reconcile(self) -> None:
        """Settle what a crash (or the user) may have changed, from local files only."""
        for batch in self.journal.batches(D.DOWNLOADING):
            complete = [r for r in batch if self._verified_locally(r)]
            for record in batch:
                self._discard_staging(record)
            self.journal.mark([r.id for r in complete], D.DONE)
            self.journal.mark([r.id for r in batch if r not in complete], D.PLANNED)
            self.bus.emit("reconcile.local", done=len(complete), replanned=len(batch) - len(complete))
        for batch in self.journal.batches(D.DONE):
            gone = [r for r in batch if not self._present(r)]
            self.journal.mark([r.id for r in gone], D.PLANNED)
            if gone:
                self.bus.emit("reconcile.missing", replanned=len(gone))

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
        with contextlib.suppress(OSError, ValueError):
            staging = _staging(destination(self.out, record))
            for path in (staging, staging.with_name(staging.name + PART_SUFFIX)):
                path.unlink(missing_ok=True)

    def _download(self, pool: ThreadPoolExecutor, batch: list[Download]) -> None:
        """Journal the intent, download in parallel, journal each outcome as it comes."""
        if orphans := [r for r in batch if r.pfn is None]:
            where = f" matching {self.request.rse}" if self.request.rse else ""
            self._fail(orphans, LookupError(f"Rucio lists no available replica{where}"))
        batch = [r for r in batch if r.pfn is not None]
        self.journal.mark([r.id for r in batch], D.DOWNLOADING)
        futures: dict[Future, Download] = {pool.submit(self._fetch, r): r for r in batch}
        pending, files, size = set(futures), 0, 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            done = []
            for future in finished:
                try:
                    future.result()
                    done.append(futures[future])
                except AuthFailure:
                    for other in pending:
                        other.cancel()
                    raise
                except Exception as exc:  # classified, recorded, and the others go on
                    self._fail([futures[future]], exc)
            self.journal.mark([r.id for r in done], D.DONE)
            files, size = files + len(done), size + sum(r.bytes for r in done)
        self.bus.emit("retrieve.batch", files=files, bytes=size)

    def _fetch(self, record: Download) -> None:
        self.request.policy.for_target(record.rse or "storage").call(self._get_verified, record)
        self.bus.emit("download.done", files=1, bytes=record.bytes, rse=record.rse)

    def _get_verified(self, record: Download) -> None:
        """Download to a staging name, compare with the catalog, then rename: the final name never
        holds unverified bytes."""
        dest = destination(self.out, record)
        staging = _staging(dest)
        try:
            got = self.storages.for_pfn(record.pfn).get(record.pfn, staging)
            if got.size != record.bytes or (record.adler32 and got.adler32 != adler.normalise(record.adler32)):
                raise ChecksumMismatch(f"download of {record.pfn}", f"{record.bytes} bytes, adler32 {record.adler32}",
                                       f"{got.size} bytes, adler32 {got.adler32}")
            os.replace(staging, dest)
        finally:
            staging.unlink(missing_ok=True)

    def _fail(self, records: list[Download], exc: BaseException) -> None:
        classified = exc.classified if isinstance(exc, GaveUp) else classify(exc)
        self.journal.fail([r.id for r in records], classified.error_class, classified.message)
        self.bus.emit("file.failed", files=len(records), error_class=classified.error_class.value,
                      message=classified.message[:500])


# --- summary --------------------------------------------------------------------------------------

def summarize(journal: DownloadJournal, out: Path, started: float | None = None) -> dict[str, Any]:
    """Counts and bytes per state, and every failed file with its error."""
    counts, sizes = journal.counts(), journal.bytes_by_state()
    problems = [{"did": f"{r.scope}:{r.name}", "state": r.state.value, "error_class": r.error_class,
                 "message": r.error_message, "attempts": r.attempts, "rse": r.rse, "pfn": r.pfn}
                for batch in journal.batches(D.FAILED) for r in batch]
    total, ended = sum(counts.values()), time.time()
    return {"command": "retrieve", "out": str(out.absolute()),
            "files": {"total": total, **{s.value: n for s, n in counts.items()}},
            "bytes": {"total": sum(sizes.values()), **{s.value: n for s, n in sizes.items()}},
            "complete": total > 0 and counts[D.DONE] == total, "problems": problems,
            "started": started, "ended": ended, "elapsed_s": ended - started if started else None}
