"""The ingest life cycle (setup → journal the plan → run the pipeline → summary).

This is where a source (directory or night spec) meets an RSE: the plan is written into the
journal once (resumable: INSERT OR IGNORE), the RSE's protocols come from Rucio, PFNs from Rucio's
own lfn2pfn, and the pipeline does the rest. Provenance (versions, server, account) goes into the
journal and the request into `run.json`, so a report can always say what ran.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryPolicy
from nightlake.catalog.rules import RulePolicy
from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.pipeline import Ingest
from nightlake.flows.ingest.upload import RemoteStorage, put_timeout
from nightlake.flows.session import (
    DEFAULT_PATIENCE,
    concluded,
    logged,
    open_catalog,
    retry_policy,
)
from nightlake.night import sources
from nightlake.night.fits import verify
from nightlake.night.payload import open_stream
from nightlake.night.spec import load_spec
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.ingest import FileRecord, FileState, IngestJournal
from nightlake.runs.rundir import INGEST, RunDir
from nightlake.runs.summary import ingest_summary
from nightlake.storage import Storage, open_storage, pfns
from nightlake.storage import credentials as storage_credentials


@dataclass(frozen=True)
class IngestRequest:
    """Everything the command line asked for."""

    source: Path
    run: Path
    options: IngestOptions
    scope: str | None = None
    dataset: str | None = None
    scheme: str | None = None
    rules: tuple[RulePolicy, ...] = field(default_factory=tuple)
    follow_links: bool = False  # a directory source's links to files out of its tree are ingested
    vo: str | None = None  # a directory source's names are CTAO's: /<vo>/<scope>/<path>
    patience: float = DEFAULT_PATIENCE  # seconds an outage of the catalog or the RSE is ridden through
    cluster: Any = None  # a flows.cluster.ClusterSpec: the uploads run on its workers (not the run's identity)

    @property
    def is_spec(self) -> bool:
        return self.source.suffix == ".toml"

    def description(self) -> dict[str, Any]:
        return {"command": "ingest", "source": str(self.source.absolute()), "rse": self.options.rse,
                "scope": self.scope, "dataset": self.dataset, "vo": self.vo, "in_place": self.options.in_place,
                "scheme": self.scheme, "follow_links": self.follow_links, "options": asdict(self.options),
                "rules": [asdict(r) for r in self.rules]}


def run_ingest(request: IngestRequest, bus: EventBus) -> dict[str, Any]:
    """Run (or resume) an ingest; return its summary (also written to RUNDIR/summary.json).

    Everything that can be refused is checked before RUNDIR is made: the source, then the scope,
    the rules' RSE expressions and the RSE against the catalog; a source that turns out bad while
    it is journaled leaves no run behind. So a corrected command is a new run, not "another run"."""
    _check_source(request)
    scope, rules = _scope(request), _rules(request)  # a bad spec is said before Rucio is asked
    catalog = open_catalog(bus, request.patience)
    catalog.check_scopes([scope])
    catalog.check_expressions(rule.rse_expression for rule in rules)
    rse_info = catalog.rse_info(request.options.rse)
    protocol = write_protocol(rse_info, request.scheme)
    with contextlib.ExitStack() as stack:
        cluster = _cluster(request, stack)
        run = RunDir(request.run)
        started, existed, planning = time.time(), run.path.exists(), False
        try:
            with run.open(INGEST, request.description()) as journal, logged(run, bus):
                planning = not journal.run_meta().get("planned")
                if planning:
                    _journal_plan(journal, request, bus)
                planning = False
                return _ingest(journal, run, request, catalog, rse_info, protocol, started, bus, cluster)
        except BadInput:
            if planning:
                run.discard(INGEST, keep_directory=existed)
            raise


def _cluster(request: IngestRequest, stack: contextlib.ExitStack) -> Any:
    """The cluster the uploads run on, started (or reached) before RUNDIR exists; a directory
    source must be visible from every worker."""
    if request.cluster is None:
        return None
    if request.options.in_place:
        raise BadInput("--cluster moves bytes, and an --in-place ingest has none to move")
    from nightlake.flows.cluster import open_cluster

    cluster = stack.enter_context(open_cluster(request.cluster))
    if not request.is_spec:
        cluster.check_visible(request.source, "the source directory")
    return cluster


def _ingest(journal: IngestJournal, run: RunDir, request: IngestRequest, catalog: Catalog, rse_info: dict,
            protocol: dict, started: float, bus: EventBus, cluster: Any = None) -> dict[str, Any]:
    """The journaled run: storage opened, the pipeline run, the summary written whatever happens."""
    journal.set_meta(**catalog.provenance())
    creds = storage_credentials.from_rucio_config()
    storage, pfn_of, storage_policy = rse_storage(rse_info, protocol, request.options.workers, request.patience,
                                                  bus, creds)
    emit_start(bus, journal, request.options.rse, protocol["scheme"])
    remote = None if cluster is None else RemoteStorage(request.options.rse, protocol, rse_info, creds.ca_cert,
                                                         creds.client_cert, request.patience, cluster.spec.threads,
                                                         put_timeout(protocol))
    ingest = Ingest(journal, catalog, storage, pfn_of, source_opener, request.options, bus, storage_policy,
                    catalog.twin(), cluster, remote)
    try:
        return concluded(run, bus, ingest.run, lambda: ingest_summary(journal, started))
    finally:
        storage.close()


def rse_storage(rse_info: dict, protocol: dict, workers: int, patience: float, bus: EventBus,
                creds: storage_credentials.StorageCredentials | None = None) -> tuple[Storage, Callable, RetryPolicy]:
    """The RSE's storage for `protocol` (TLS and the credential as the Rucio client has them), the
    PFNs of its files (Rucio's lfn2pfn) and its retry policy, riding through an outage of
    `patience` seconds."""
    creds = creds or storage_credentials.from_rucio_config()
    storage = open_storage(protocol, ca_cert=creds.ca_cert, client_cert=creds.client_cert, token=creds.token,
                           pool_size=workers, timeout=put_timeout(protocol), rse_info=rse_info)
    policy = retry_policy(bus, rse_info["rse"], patience, probe=_storage_probe(storage, rse_info, protocol["scheme"]))
    return storage, _pfn_resolver(rse_info, protocol["scheme"]), policy


def emit_start(bus: EventBus, journal: IngestJournal, rse: str, scheme: str) -> None:
    """The run's size and where a resumed run starts from, so that progress and ETA count only
    what is left to do."""
    counts = journal.counts()
    stored = sum(counts[s] for s in FileState if s not in (FileState.PLANNED, FileState.UPLOADING,
                                                            FileState.FAILED, FileState.QUARANTINED))
    bus.emit(Kind.RUN_START, rse=rse, scheme=scheme, files=sum(counts.values()), uploaded=stored,
             done=counts[FileState.DONE])


def _check_source(request: IngestRequest) -> None:
    if not request.source.exists():
        raise BadInput(f"{request.source}: no such directory or spec file")
    if not request.is_spec and not request.source.is_dir():
        raise BadInput(f"{request.source}: expected a directory or a night spec (.toml)")
    if not request.is_spec and not request.scope:
        raise BadInput("a directory source needs --scope SCOPE")
    if request.options.register == "dirac" and not (load_spec(request.source).naming.vo if request.is_spec
                                                    else request.vo):
        raise BadInput("--register dirac needs CTAO's names (DIRAC takes the scope from the path): "
                       "--vo VO for a directory, [naming] vo in a spec")


def _scope(request: IngestRequest) -> str:
    """The scope of the run's files: --scope for a directory, the spec's own for a spec."""
    return load_spec(request.source).night.scope if request.is_spec else request.scope


def _records(request: IngestRequest, skipped: sources.Skipped) -> Iterator[sources.SourceFile]:
    if request.is_spec:
        from nightlake.night.plan import Plan

        return sources.from_spec(Plan(load_spec(request.source)))
    return sources.from_directory(request.source, request.scope, request.dataset, request.follow_links, skipped,
                                  request.vo)


def _rules(request: IngestRequest) -> tuple[RulePolicy, ...]:
    """Rules from the command line win; otherwise the spec's policy."""
    if request.rules or not request.is_spec:
        return request.rules
    return tuple(RulePolicy(r.rse_expression, r.copies, r.lifetime, r.activity) for r in load_spec(request.source).rules)


def _journal_plan(journal: IngestJournal, request: IngestRequest, bus: EventBus) -> None:
    """Write every file, dataset and rule of the run into the journal before any side effect."""
    datasets: set[tuple[str, str]] = set()

    def noting_datasets(records):
        for record in records:
            datasets.add((record.scope, record.dataset))
            yield record

    skipped = sources.Skipped()
    added = journal.add_files(noting_datasets(_records(request, skipped)))
    for entry in skipped.as_list():
        bus.emit(Kind.SOURCE_SKIPPED, **entry)
    journal.set_meta(skipped=skipped.as_list())
    if not datasets:
        raise BadInput(f"{request.source}: no files to ingest")
    journal.add_datasets(sorted(datasets))
    for scope, name in sorted(datasets):
        for rule in _rules(request):
            journal.add_rule(scope, name, rule.rse_expression, rule.copies, rule.lifetime, rule.activity)
    journal.set_meta(planned=True)
    bus.emit(Kind.RUN_PLANNED, files=added, datasets=len(datasets))


def write_protocol(rse_info: dict, scheme: str | None) -> dict:
    """The RSE's write protocol: the one asked for, else Rucio's preferred (lowest wan priority)."""
    writable = [p for p in rse_info["protocols"] if (p["domains"]["wan"].get("write") or 0) > 0]
    if scheme:
        writable = [p for p in writable if p["scheme"] == scheme]
        if not writable:
            schemes = sorted({p["scheme"] for p in rse_info["protocols"]})
            raise BadInput(f"RSE {rse_info['rse']} has no writable {scheme!r} protocol (it has: {', '.join(schemes)})")
    if not writable:
        raise BadInput(f"RSE {rse_info['rse']} declares no writable protocol")
    return min(writable, key=lambda p: p["domains"]["wan"]["write"])


def _pfn_resolver(rse_info: dict, scheme: str):
    def pfn_of(batch: list[FileRecord]) -> dict[str, str]:
        return pfns(rse_info, scheme, [{"scope": r.scope, "name": r.name} for r in batch])
    return pfn_of


def _storage_probe(storage: Storage, rse_info: dict, scheme: str) -> Callable[[], object]:
    """The RSE's health check while it is down: a stat of a path where nothing is (a storage that
    is up answers "absent" at once)."""
    pfn = pfns(rse_info, scheme, [{"scope": "nightlake", "name": "health-probe"}])["nightlake:health-probe"]
    return lambda: storage.stat(pfn)


def source_opener(record: FileRecord):
    """A factory of the source's chunks, fresh on each attempt: the streamed payload's, or the
    local file's, refused if it is no longer the file that was planned. A FITS file's CHECKSUM and
    DATASUM are verified in this same pass (the upload's, or an in-place file's adler32)."""
    if record.source.startswith(sources.PAYLOAD):
        planned = sources.planned_file(record)
        return lambda: verify.checked(open_stream(planned).iter_chunks(), record.bytes)
    return lambda: verify.checked(sources.read_unchanged(record.source, record.bytes, record.mtime_ns),
                                  record.bytes)
