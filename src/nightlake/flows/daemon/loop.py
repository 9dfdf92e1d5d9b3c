"""The daemon's loop, in two threads: this one rescans, describes and journals batches, creates
their datasets (with their container and rules), removes the triggers of done files and closes
the datasets whose observation is over; the ingest pipeline's thread follows the journal and
registers the files in place. What it shares with `run`: the request and an open journal.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.daemon import triggers
from nightlake.flows.daemon.describe import Described, Invalid, describe
from nightlake.flows.daemon.request import DaemonRequest
from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.pipeline import Ingest
from nightlake.flows.ingest.register import Registrar
from nightlake.flows.ingest.run import source_opener
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.ingest import DatasetState, FileState, IngestJournal
from nightlake.storage import Storage

TICK = 0.1  # seconds between two looks at the clock when there is nothing to do
CLOSE_EVERY = 2.0  # seconds between two looks for datasets to close (a query over the journal)
SETTLE_EVERY = 0.5  # seconds between two looks for files done (their triggers removed)


@dataclass(frozen=True)
class Pipeline:
    """What each batch's `Ingest` is built from: the RSE's storage, PFNs and retry policy."""

    storage: Storage
    pfn_of: Callable
    policy: RetryPolicy


class Daemon:
    """Two threads: this one rescans, describes and journals batches, removes the triggers of
    done files and closes datasets; the pipeline's follows the journal (`Ingest.run(follow=...)`),
    so a batch is checked and registered while the next one gathers."""

    def __init__(self, request: DaemonRequest, watch: Path, area: Path, journal: IngestJournal, catalog: Catalog,
                 pipeline: Pipeline, bus: EventBus, stop: threading.Event, say: Callable[[str], None]):
        self.request, self.root, self.area, self.journal, self.catalog = request, watch, area, journal, catalog
        self.pipeline, self.bus, self.stop, self.say = pipeline, bus, stop, say
        self.metadata_catalog = catalog.twin()
        self.options = IngestOptions(rse=request.rse, workers=request.workers, batch_files=request.batch_files,
                                     close_datasets=False, in_place=True)
        self.registrar = Registrar(self._ingest().ctx, catalog.twin())  # this thread's own client
        self.waiting: dict[Path, triggers.Trigger] = {}  # found, not yet journaled: the backlog
        self.journaled: dict[str, triggers.Trigger] = {}  # DID name -> trigger, until the file is done
        self.ignored: set[Path] = set()  # refused triggers and those of failed files: not looked at again
        self.ended: dict[str, tuple[Path, float]] = {}  # dataset -> its end-of-observation marker, when
        self.following = threading.Event()
        self.failure: list[BaseException] = []
        self.tally = _Tally()

    def run(self) -> None:
        """Finish an earlier run's leftovers, then batch until stopped; the pipeline finishes what
        it has started."""
        self._resume()
        self.following.set()
        follower = threading.Thread(target=self._follow, name="pipeline")
        follower.start()
        try:
            self._loop()
        finally:
            self.following.clear()
            follower.join()
        if self.failure:
            raise self.failure[0]
        self._settle()
        self.say(self.tally.line(len(self.waiting), stopping=True))

    def _loop(self) -> None:
        watcher = triggers.Watcher(self.root) if self.request.inotify else None
        due = {"scan": 0.0, "settle": 0.0, "close": 0.0, "log": time.monotonic() + self.request.log_every}
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= due["settle"]:
                    self._settle()
                    due["settle"] = now + SETTLE_EVERY
                if now >= due["scan"]:
                    self._take(triggers.scan(self.root))
                    due["scan"] = now + self.request.rescan
                if self._batch_due():
                    self._batch()
                    continue
                if now >= due["close"]:
                    self._close_datasets()
                    due["close"] = now + CLOSE_EVERY
                if now >= due["log"]:
                    self.say(self.tally.line(len(self.waiting)))
                    due["log"] = now + self.request.log_every
                self._wait(watcher)
        finally:
            if watcher is not None:
                watcher.close()

    def _wait(self, watcher: triggers.Watcher | None) -> None:
        """A tick of idleness, or, with inotify, until a trigger appears (taken at once)."""
        if watcher is None:
            self.stop.wait(TICK)
        elif appeared := watcher.ready(TICK):
            self._take(triggers.look(appeared))

    def _resume(self) -> None:
        """What an earlier run left (a SIGKILL mid-batch included), finished as `ingest` resumes;
        every dataset put in its container again (idempotent), in case a crash came between."""
        ingest = self._ingest()
        ingest.registrar.create_datasets()
        self._contain({(s, n) for s, n, _ in self.journal.datasets()})
        ingest.registrar.add_rules()
        ingest.run(requeue=True)

    def _follow(self) -> None:
        try:
            self._ingest().run(requeue=False, follow=self.following.is_set)
        except BaseException as exc:  # raised by `run` in the daemon's thread
            self.failure.append(exc)
            self.stop.set()

    def _ingest(self) -> Ingest:
        p = self.pipeline
        return Ingest(self.journal, self.catalog, p.storage, p.pfn_of, source_opener, self.options, self.bus,
                      p.policy, self.metadata_catalog)

    # --- discovery ---------------------------------------------------------------------------

    def _take(self, found: triggers.Scan) -> None:
        """What a rescan or inotify found: new triggers join the backlog, unless the journal
        already knows their file (a restart's rescan finds triggers of files done or set aside)."""
        for trigger, reason in found.refused:
            if trigger not in self.ignored:
                self.ignored.add(trigger)
                self.bus.emit(Kind.TRIGGER_REFUSED, trigger=str(trigger), reason=reason)
                self.say(f"refused {trigger}: {reason}")
        fresh = {self._name(t): t for t in found.ready
                 if t.path not in self.waiting and t.path not in self.ignored and self._name(t) not in self.journaled}
        known = self.journal.records_of(self.request.scope, fresh) if fresh else {}
        for name, trigger in fresh.items():
            record = known.get(name)
            if record is None:
                self.waiting[trigger.path] = trigger
            elif record.state is FileState.DONE:  # registered before a crash left its trigger
                triggers.remove(trigger.path)
            elif record.state is FileState.QUARANTINED:  # set aside before a crash, not yet moved
                self._discard(trigger, record.error_message or "invalid")
            elif record.state is FileState.FAILED:
                self.ignored.add(trigger.path)
            else:
                self.journaled[name] = trigger
        self.ended.update(found.ended)
        self.bus.emit(Kind.DAEMON_BACKLOG, files=len(self.waiting) + len(self.journaled))

    def _name(self, trigger: triggers.Trigger) -> str:
        return trigger.data.relative_to(self.area).as_posix()

    def _batch_due(self) -> bool:
        if not self.waiting:
            return False
        oldest = next(iter(self.waiting.values()))
        return len(self.waiting) >= self.request.batch_files or time.time() - oldest.at >= self.request.batch_age

    # --- one batch ---------------------------------------------------------------------------

    def _batch(self) -> None:
        """Describe a batch (bad files set aside) and journal it: the pipeline takes it from there."""
        batch = list(islice(self.waiting.values(), self.request.batch_files))
        with ThreadPoolExecutor(self.request.workers, thread_name_prefix="describe") as pool:
            described = list(pool.map(self._describe, batch))
        for trigger, problem in zip(batch, described):
            if isinstance(problem, Invalid):
                self._set_aside(trigger, str(problem))
        self._plan([(t, d) for t, d in zip(batch, described) if isinstance(d, Described)])

    def _describe(self, trigger: triggers.Trigger) -> Described | Invalid:
        try:
            return describe(trigger.data, self.area, self.request.scope, self.request.naming, self.request.required)
        except Invalid as problem:
            return problem

    def _plan(self, good: list[tuple[triggers.Trigger, Described]]) -> None:
        """New datasets first: journaled, created in Rucio, put in their container and given their
        rules; then the files are journaled, and the pipeline, which follows the journal, takes them."""
        if not good:
            return
        scope, journal = self.request.scope, self.journal
        known = {(s, n) for s, n, _ in journal.datasets()}
        containers = {(scope, d.record.dataset): d.container for _, d in good}
        new = sorted(did for did in containers if did not in known)
        if new:
            journal.add_datasets(new)
            for dataset in new:
                for rule in self.request.rules:
                    journal.add_rule(*dataset, rule.rse_expression, rule.copies, rule.lifetime, rule.activity)
            mapping = journal.run_meta().get("containers", {})
            journal.set_meta(containers={**mapping, **{f"{s}:{n}": containers[(s, n)] for s, n in new}})
            self.registrar.create_datasets()
            self._contain(set(new))
            self.registrar.add_rules()
        journal.add_files(d.record for _, d in good)
        for trigger, d in good:
            self.journaled[d.record.name] = self.waiting.pop(trigger.path)

    def _contain(self, datasets: set[tuple[str, str]]) -> None:
        """Each dataset in its night's container, the containers created once."""
        catalog = self.registrar.catalog
        mapping = self.journal.run_meta().get("containers", {})
        by_container: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for scope, name in sorted(datasets):
            if container := mapping.get(f"{scope}:{name}"):
                by_container[(scope, container)].append((scope, name))
        if not by_container:
            return
        known = catalog.existing(list(by_container))
        if rejected := catalog.add_datasets([c for c in by_container if c not in known], did_type="CONTAINER"):
            raise rejected[0].failure
        for container, members in by_container.items():
            if rejected := catalog.attach(container, members):
                raise rejected[0].failure

    def _settle(self) -> None:
        """Triggers of the files now done are removed (their latency counted: trigger to done);
        those of failed files are kept, for a restart to try again."""
        if not self.journaled:
            return
        records = self.journal.records_of(self.request.scope, list(self.journaled))
        latencies = []
        for name, record in records.items():
            if record.state is FileState.DONE:
                trigger = self.journaled.pop(name)
                triggers.remove(trigger.path)
                latencies.append(record.updated_at - trigger.at)
            elif record.state in (FileState.FAILED, FileState.QUARANTINED):
                self.ignored.add(self.journaled.pop(name).path)
        if latencies:
            self.bus.emit(Kind.DAEMON_LATENCY, seconds=latencies)
            self.bus.emit(Kind.DAEMON_BATCH, files=len(latencies), backlog=len(self.waiting) + len(self.journaled),
                          **_percentiles(latencies))
        self.tally.add(latencies, len(self.ignored))

    # --- bad files ---------------------------------------------------------------------------

    def _set_aside(self, trigger: triggers.Trigger, reason: str) -> None:
        """Journal the file as quarantined with the reason, then move it to invalid/ and remove its
        trigger (a crash between the two is finished by the next scan)."""
        name = self._name(trigger)
        self.journal.add_files([{"scope": self.request.scope, "name": name, "dataset": "", "source": str(trigger.data),
                                 "bytes": _size(trigger.data), "meta": {}}])
        self.journal.quarantine([self.journal.records_of(self.request.scope, [name])[name].id], reason)
        self.waiting.pop(trigger.path, None)
        self._discard(trigger, reason)

    def _discard(self, trigger: triggers.Trigger, reason: str) -> None:
        moved = None
        if trigger.data.exists():
            moved = triggers.set_aside(self.root, trigger.data)
        triggers.remove(trigger.path)
        self.tally.invalid += 1
        self.bus.emit(Kind.FILE_INVALID, path=str(trigger.data), moved_to=str(moved), reason=reason)
        self.say(f"invalid {trigger.data}: {reason} (moved to {moved})")

    # --- datasets ----------------------------------------------------------------------------

    def _close_datasets(self) -> None:
        """Close the datasets whose observation is over: quiet for `quiet` seconds, or marked
        ended, once every file triggered before then is journaled (the registrar closes only
        those whose files are all done)."""
        now = time.time()
        oldest_waiting = min((t.at for t in self.waiting.values()), default=now)
        activity = self.journal.last_activity()
        ended = {}
        for scope, name, _ in self.journal.datasets(DatasetState.CREATED):
            marker = self.ended.get(name)
            if marker and oldest_waiting > marker[1] or \
                    activity.get((scope, name), now) < min(now - self.request.quiet, oldest_waiting):
                ended[(scope, name)] = marker
        if not ended:
            return
        self.registrar.close_datasets(set(ended))
        closed = {(s, n) for s, n, _ in self.journal.datasets(DatasetState.CLOSED)}
        for dataset, marker in ended.items():
            if marker and dataset in closed:
                triggers.remove(marker[0])
                self.ended.pop(dataset[1], None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ordered = sorted(latencies)
    return {"latency_p50": round(ordered[len(ordered) // 2], 3), "latency_max": round(ordered[-1], 3)}


class _Tally:
    """What the periodic log line says: files registered this session, their rate, and the
    trigger-to-registered latency of the files since the last line."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.registered = self.invalid = self.failed = 0
        self.latencies: list[float] = []

    def add(self, latencies: list[float], ignored: int) -> None:
        self.registered += len(latencies)
        self.latencies += latencies
        self.failed = ignored

    def line(self, backlog: int, stopping: bool = False) -> str:
        now = time.monotonic()
        rate = self.registered / max(now - self.started, 1e-9)
        latency = ""
        if self.latencies:
            ordered = sorted(self.latencies)
            latency = (f"; latency p50 {ordered[len(ordered) // 2]:.1f} s, p95 "
                       f"{ordered[int(len(ordered) * 0.95)]:.1f} s, max {ordered[-1]:.1f} s")
        self.latencies, self.last = [], now
        what = "stopped after the batch in progress" if stopping else "watching"
        return (f"{time.strftime('%H:%M:%S')} daemon {what}: registered {self.registered:,} this session "
                f"({rate:.1f} files/s), backlog {backlog:,}, invalid {self.invalid:,}, "
                f"not registered {self.failed:,}{latency}")
