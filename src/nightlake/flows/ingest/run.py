"""The ingest life cycle (setup → journal the plan → run the pipeline → summary).

This is where a source (directory or night spec) meets an RSE: the plan is written into the
journal once (resumable: INSERT OR IGNORE), the RSE's protocols come from Rucio, PFNs from Rucio's
own lfn2pfn, and the pipeline does the rest. Provenance (versions, server, options) goes into
`run.json` so a report can always say what ran.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nightlake import __version__
from nightlake.night import sources
from nightlake.catalog.client import Catalog
from nightlake import BadInput
from nightlake.observe.events import EventBus, EventLog
from nightlake.runs.journal.ingest import FileRecord, FileState, IngestJournal
from nightlake.night.payload import open_stream
from nightlake.flows.ingest.pipeline import Ingest, IngestOptions
from nightlake.catalog.retry import GaveUp, RetryEvent, RetryPolicy
from nightlake.catalog.rules import RulePolicy
from nightlake.runs.rundir import RunDir, summarize, write_summary
from nightlake.night.spec import load_spec
from nightlake.storage import open_storage, pfns, tls_from_rucio_config

# Per-file progress events feed the live display only; the event log keeps the batch events.
LIVE_ONLY = frozenset({"upload.done"})


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

    @property
    def is_spec(self) -> bool:
        return self.source.suffix == ".toml"

    def description(self) -> dict[str, Any]:
        return {"command": "ingest", "source": str(self.source.absolute()), "rse": self.options.rse,
                "scope": self.scope, "dataset": self.dataset, "in_place": self.options.in_place,
                "scheme": self.scheme, "options": asdict(self.options),
                "rules": [asdict(r) for r in self.rules]}


def run_ingest(request: IngestRequest, bus: EventBus) -> dict[str, Any]:
    """Run (or resume) an ingest; return its summary (also written to RUNDIR/summary.json)."""
    _check_source(request)
    run = RunDir(request.run)
    started = time.time()
    with run.open(request.description()) as journal, EventLog(run.events) as log:
        bus.subscribe(lambda event: None if event.kind in LIVE_ONLY else log(event))
        if not journal.run_meta().get("planned"):
            _journal_plan(journal, request, bus)
        catalog = Catalog(RetryPolicy(target="catalog", catalog=True, on_retry=_retry_reporter(bus)))
        journal.set_meta(**_provenance(catalog))
        _check_rules(catalog, journal)
        rse_info = _rse_info(request.options.rse)
        protocol = _protocol(rse_info, request.scheme)
        ca_cert, client_cert = tls_from_rucio_config()
        storage = open_storage(protocol, ca_cert=ca_cert, client_cert=client_cert,
                               pool_size=request.options.workers, rse_info=rse_info)
        _emit_start(bus, journal, request.options.rse, protocol["scheme"])
        try:
            storage_policy = RetryPolicy(target=request.options.rse, on_retry=_retry_reporter(bus))
            Ingest(journal, catalog, storage, _pfn_resolver(rse_info, protocol["scheme"]), _source_opener,
                   request.options, bus, storage_policy, describer=Catalog(catalog.policy)).run()
        finally:
            storage.close()
            summary = summarize(journal, started)
            write_summary(run, summary)
            bus.emit("run.end", complete=summary["complete"], failed=summary["files"]["failed"])
    return summary


def _emit_start(bus: EventBus, journal: IngestJournal, rse: str, scheme: str) -> None:
    """The run's size and where a resumed run starts from, so that progress and ETA count only
    what is left to do."""
    counts = journal.counts()
    stored = sum(counts[s] for s in FileState if s not in (FileState.PLANNED, FileState.UPLOADING,
                                                            FileState.FAILED, FileState.QUARANTINED))
    bus.emit("run.start", rse=rse, scheme=scheme, files=sum(counts.values()), uploaded=stored,
             done=counts[FileState.DONE])


def _check_source(request: IngestRequest) -> None:
    if not request.source.exists():
        raise BadInput(f"{request.source}: no such directory or spec file")
    if not request.is_spec and not request.source.is_dir():
        raise BadInput(f"{request.source}: expected a directory or a night spec (.toml)")
    if not request.is_spec and not request.scope:
        raise BadInput("a directory source needs --scope SCOPE")


def _records(request: IngestRequest) -> Iterator[sources.SourceFile]:
    if request.is_spec:
        from nightlake.night.plan import Plan

        return sources.from_spec(Plan(load_spec(request.source)))
    return sources.from_directory(request.source, request.scope, request.dataset)


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

    added = journal.add_files(noting_datasets(_records(request)))
    if not datasets:
        raise BadInput(f"{request.source}: no files to ingest")
    journal.add_datasets(sorted(datasets))
    for scope, name in sorted(datasets):
        for rule in _rules(request):
            journal.add_rule(scope, name, rule.rse_expression, rule.copies, rule.lifetime, rule.activity)
    journal.set_meta(planned=True)
    bus.emit("run.planned", files=added, datasets=len(datasets))


def _retry_reporter(bus: EventBus):
    """Retries are data too: each one becomes a `retry` event (metrics and report count them)."""
    def report(event: RetryEvent) -> None:
        bus.emit("retry", target=event.target, error_class=event.error_class.value, attempt=event.attempt,
                 delay=round(event.delay, 3), message=event.message[:300])
    return report


def _check_rules(catalog: Catalog, journal: IngestJournal) -> None:
    """A rule whose RSE expression Rucio cannot resolve is bad input: say so before any upload."""
    from rucio.common.exception import InvalidRSEExpression

    for expression in sorted({rule["rse_expression"] for rule in journal.rules()}):
        try:
            catalog.call(lambda e=expression: list(catalog.client.list_rses(e)))
        except GaveUp as failure:
            if isinstance(failure.original, InvalidRSEExpression):
                raise BadInput(f"rule RSE expression {expression!r} matches no RSE") from None
            raise


def _provenance(catalog: Catalog) -> dict[str, Any]:
    from rucio import version as rucio_version

    server = catalog.call(catalog.client.ping)
    return {"versions": {"nightlake": __version__, "rucio_clients": rucio_version.version_string(),
                         "rucio_server": server.get("version")},
            "rucio_host": catalog.client.host, "account": catalog.client.account}


def _rse_info(rse: str) -> dict:
    from rucio.common.exception import RSENotFound
    from rucio.rse import rsemanager

    try:
        return rsemanager.get_rse_info(rse)
    except RSENotFound:
        raise BadInput(f"RSE {rse!r} is not known to the Rucio server") from None


def _protocol(rse_info: dict, scheme: str | None) -> dict:
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


def _source_opener(record: FileRecord):
    """A local file's path, or a factory of the streamed payload's chunks (fresh on each attempt)."""
    if record.source.startswith(sources.PAYLOAD):
        planned = sources.planned_file(record)
        return lambda: open_stream(planned).iter_chunks()
    return Path(record.source)
