"""The retrieve life cycle: check the request, journal the selection, download, summarise.

It mirrors ingest: the selection (DIDs, or DID metadata filters) is streamed from Rucio into the
download journal with each file's replica, size and adler32 *before* any byte moves (`select`);
then `download.Retrieve` brings every file home, verified. Re-running the same command resumes
from the journal alone, without asking Rucio again; a selection Rucio refuses, or that matches
nothing, leaves no run directory behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.retrieve.download import Retrieve, Storages
from nightlake.flows.retrieve.select import (
    did_types,
    filtered_files,
    journal_selection,
    named_files,
    parse_did,
)
from nightlake.flows.session import (
    DEFAULT_PATIENCE,
    concluded,
    logged,
    open_catalog,
    outage_reporter,
    retry_reporter,
)
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.download import D, DownloadJournal
from nightlake.runs.rundir import RETRIEVE, RunDir
from nightlake.runs.summary import retrieve_summary

_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class RetrieveRequest:
    """Everything the command line asked for; `description()` is what makes a re-run a resume.

    `rse`: an RSE expression the replicas must match; `from_rse`: the RSE preferred when it has a
    replica; `workers`: downloads in parallel; `batch_files`: files per `list_replicas` call and
    per journal transition; `policy`: the retry policy of every download; `patience`: seconds an
    outage of the catalog or of a source RSE is ridden through."""

    out: Path
    run: Path
    dids: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()
    scope: str | None = None
    rse: str | None = None
    from_rse: str | None = None
    workers: int = 8
    batch_files: int = 1000
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    patience: float = DEFAULT_PATIENCE
    cluster: Any = None  # a flows.cluster.ClusterSpec: the downloads run on its workers (not the run's identity)

    def description(self) -> dict[str, Any]:
        return {"command": "retrieve", "dids": list(self.dids), "filters": dict(self.filters),
                "scope": self.scope, "out": str(self.out.absolute()), "rse": self.rse, "from_rse": self.from_rse}


def parse_filter(text: str) -> tuple[str, str]:
    """`KEY=VALUE` as Rucio's DID metadata filter takes it (KEY may carry Rucio's `.gte`-style suffix)."""
    key, sep, value = text.partition("=")
    if not sep or not _FILTER_KEY.match(key.strip()) or not value.strip():
        raise BadInput(f"--filter {text!r}: expected KEY=VALUE, e.g. telescope=LST-1")
    return key.strip(), value.strip()


def run_retrieve(request: RetrieveRequest, bus: EventBus) -> dict[str, Any]:
    """Run (or resume) a retrieve; return its summary (also written to RUNDIR/summary.json)."""
    _check(request)
    run = RunDir(request.run)
    started = time.time()
    catalog = open_catalog(bus, request.patience)
    catalog.check_scopes([request.scope])
    catalog.check_expressions([request.rse, request.from_rse])
    types = did_types(catalog, [parse_did(d) for d in request.dids])
    with contextlib.ExitStack() as stack:
        cluster = _cluster(request, stack)
        created, existed = False, run.path.exists()
        try:
            with run.open(RETRIEVE, request.description()) as journal, logged(run, bus):
                created = not journal.run_meta().get("planned")
                if created:
                    files = named_files(catalog, types) if request.dids else \
                        filtered_files(catalog, request.scope, dict(request.filters))
                    journal_selection(journal, catalog, files, request.rse, request.from_rse, bus)
                created = False
                return _download_all(journal, run, request, started, bus, cluster)
        except BadInput:
            if created:
                run.discard(RETRIEVE, keep_directory=existed)
            raise


def _cluster(request: RetrieveRequest, stack: contextlib.ExitStack) -> Any:
    """The cluster the downloads run on, started (or reached) before RUNDIR exists; OUT (or the
    directory it will be made in) must be visible from every worker."""
    if request.cluster is None:
        return None
    from nightlake.flows.cluster import open_cluster

    cluster = stack.enter_context(open_cluster(request.cluster))
    out = request.out.absolute()
    while not out.exists() and out != out.parent:
        out = out.parent
    cluster.check_visible(out, "the destination directory")
    return cluster


def _download_all(journal: DownloadJournal, run: RunDir, request: RetrieveRequest, started: float,
                  bus: EventBus, cluster: Any = None) -> dict[str, Any]:
    if request.policy.on_retry is None:  # the command's own policy: report to this run's events
        policy = dataclasses.replace(request.policy, on_retry=retry_reporter(bus), on_outage=outage_reporter(bus),
                                     patience=request.patience)
        request = dataclasses.replace(request, policy=policy)
    storages = Storages(request.workers)
    counts = journal.counts()
    bus.emit(Kind.RUN_START, files=sum(counts.values()), done=counts[D.DONE])
    try:
        return concluded(run, bus, Retrieve(journal, storages, request, bus, cluster).run,
                         lambda: retrieve_summary(journal, request.out, started))
    finally:
        storages.close()


def _check(request: RetrieveRequest) -> None:
    if bool(request.dids) == bool(request.filters):
        raise BadInput("select files with DIDs (SCOPE:NAME ...) or with --filter KEY=VALUE, not both or neither")
    if request.filters and not request.scope:
        raise BadInput("--filter needs --scope SCOPE")
    for did in request.dids:
        parse_did(did)
