"""The daemon's life cycle: checks, lock, journal, resume, then batches until told to stop.

Everything refusable is said before anything is written: the directory, the scope, the rules'
RSE expressions, the RSE (its lfn2pfn must be `identity`, or files could not be registered where
they are), and that the directory is that RSE's storage area for the scope (its lock file is
looked up on storage through its PFN). Then the run directory is opened (`runs/rundir.DAEMON`:
a restart must watch the same directory for the same RSE and scope) and an earlier run's
leftovers are finished first, exactly as `ingest` resumes: after a SIGKILL the journal says
where every file is, and nothing is registered twice.

`loop.Daemon` then rescans the tree (`triggers`), gathers ready files into batches by count or age,
describes them (`describe`; bad ones to `invalid/`), creates their new datasets at once (with
their container and their rules, so replication starts while the night goes on) and journals
them; the ingest pipeline, in a thread of its own, follows the journal and registers them in
place, so one batch registers while the next gathers. A trigger is removed only when its file
is done. `stop` (SIGTERM, SIGINT) lets the pipeline finish what it has taken; what is still
waiting keeps its trigger for the next start.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.flows.daemon import lock
from nightlake.flows.daemon.loop import Daemon, Pipeline
from nightlake.flows.daemon.request import DaemonRequest
from nightlake.flows.ingest.run import (
    emit_start,
    rse_storage,
    write_protocol,
)
from nightlake.flows.session import concluded, logged, open_catalog
from nightlake.night import names
from nightlake.observe.events import EventBus
from nightlake.runs.rundir import DAEMON, RunDir
from nightlake.runs.summary import ingest_summary
from nightlake.storage import pfns

AREA_DEPTH = 8  # levels above WATCH_DIR where the scope's storage area may be


def run_daemon(request: DaemonRequest, bus: EventBus, stop: threading.Event,
               say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Watch until `stop` is set; return the run's summary (also RUNDIR/summary.json)."""
    watch = _check_watch(request)
    catalog = open_catalog(bus, request.patience)
    catalog.check_scopes([request.scope])
    catalog.check_expressions(rule.rse_expression for rule in request.rules)
    rse_info = catalog.rse_info(request.rse)
    if rse_info.get("lfn2pfn_algorithm") != "identity":
        raise BadInput(f"RSE {request.rse} names its files with the {rse_info.get('lfn2pfn_algorithm')!r} "
                       f"lfn2pfn, not 'identity': files cannot be registered in place where the writer put them")
    protocol = write_protocol(rse_info, request.scheme)
    with lock.watching(watch):
        storage, pfn_of, policy = rse_storage(rse_info, protocol, request.workers, request.patience, bus)
        try:
            area = _storage_area(watch, request, lambda pfn: policy.call(storage.stat, pfn), rse_info,
                                 protocol["scheme"])
            run, started = RunDir(request.run), time.time()
            with run.open(DAEMON, request.description()) as journal, logged(run, bus):
                journal.set_meta(**catalog.provenance(), planned=True)
                emit_start(bus, journal, request.rse, protocol["scheme"])
                daemon = Daemon(request, watch, area, journal, catalog, Pipeline(storage, pfn_of, policy), bus,
                                stop, say)
                return concluded(run, bus, daemon.run, lambda: ingest_summary(journal, started))
        finally:
            storage.close()


def _check_watch(request: DaemonRequest) -> Path:
    watch = request.watch.resolve()
    if not watch.is_dir():
        raise BadInput(f"{request.watch}: not a directory")
    if problem := names.scope_problem(request.scope):
        raise BadInput(f"--scope {request.scope}: {problem}")
    if request.inotify and importlib.util.find_spec("inotify_simple") is None:
        raise BadInput("--inotify needs inotify_simple: pip install 'nightlake[daemon]'")
    return watch


def _storage_area(watch: Path, request: DaemonRequest, stat: Callable, rse_info: dict, scheme: str) -> Path:
    """Where the RSE keeps the scope's files (`<prefix>/<scope>/`, identity lfn2pfn): WATCH_DIR or
    the ancestor of it through whose PFNs the lock file is seen on storage. The DID names are the
    paths under it. Refused otherwise: every file would fail its in-place check, one by one."""
    lock_file = watch / lock.LOCK_NAME
    for area in (watch, *watch.parents[:AREA_DEPTH]):
        name = lock_file.relative_to(area).as_posix()
        pfn = pfns(rse_info, scheme, [{"scope": request.scope, "name": name}])[f"{request.scope}:{name}"]
        seen = stat(pfn)
        if seen is not None and seen.size == lock_file.stat().st_size:
            return area
    raise BadInput(f"{request.watch} is not in the storage area of scope {request.scope} on {request.rse} "
                   f"(its lock file is not seen through the RSE's PFNs)")
