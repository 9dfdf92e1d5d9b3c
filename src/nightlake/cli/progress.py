"""Progress of a run, drawn from the event stream (accounting is separate from transfer).

In a terminal, rich bars redrawn a few times a second; in a log file or a batch job, one plain
line every half minute, so that a night that runs for an hour never looks dead. Both count only
what this session does, so a resumed run shows honest rates and an honest ETA. The pipeline only
emits events and never knows it is being watched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nightlake.night.spec import human_bytes
from nightlake.observe.events import Event, Kind

MOVED = frozenset({Kind.UPLOAD_DONE, Kind.DOWNLOAD_DONE})  # one file's bytes moved, ingest or retrieve


class Tally:
    """What a run has done so far, from its events; cheap per event. Not locked: each listener
    that owns one counts under its own lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.total = self.moved_before = self.done_before = 0
        self.moved = self.bytes = self.done = self.failed = 0
        self.waiting: dict[str, str] = {}  # target -> why: the services the run waits for
        self.workers: dict[str, list[int]] = {}  # cluster worker -> [files, bytes] moved

    def count(self, event: Event) -> None:
        fields = event.fields
        if event.kind == Kind.RUN_START:
            self.total = fields.get("files", 0)
            self.done_before = fields.get("done", 0)
            self.moved_before = fields.get("uploaded", self.done_before)
        elif event.kind in MOVED:
            self.moved += fields.get("files", 1)
            self.bytes += fields.get("bytes", 0)
        elif event.kind == Kind.RECONCILE_CATALOG and fields.get("adopted"):
            self.moved_before += fields["adopted"]  # an earlier run's uploads, found in the catalog
        elif event.kind == Kind.DONE_BATCH:
            self.done += fields.get("files", 0)
        elif event.kind == Kind.FILE_FAILED:
            self.failed += fields.get("files", 0)
        elif event.kind == Kind.SERVICE_DOWN:
            self.waiting[fields.get("target", "?")] = fields.get("message", "")
        elif event.kind == Kind.SERVICE_UP:
            self.waiting.pop(fields.get("target", "?"), None)
        elif event.kind == Kind.WORKER_BATCH:
            moved = self.workers.setdefault(str(fields.get("worker", "?")), [0, 0])
            moved[0] += fields.get("files", 0)
            moved[1] += fields.get("bytes", 0)

    def workers_line(self) -> str:
        """Each cluster worker's files/s and MB/s this session, or "" without a cluster."""
        elapsed = max(self.clock() - self.started, 1e-6)
        return ", ".join(f"{worker} {files / elapsed:.1f} files/s {size / 1e6 / elapsed:.1f} MB/s"
                         for worker, (files, size) in sorted(self.workers.items()))

    def waiting_line(self) -> str:
        """What the run waits for, or ""."""
        return "; ".join(f"waiting for {target} ({why})" for target, why in self.waiting.items())

    def rates(self) -> tuple[float, float]:
        """(files/s, MB/s) of this session."""
        elapsed = max(self.clock() - self.started, 1e-6)
        return self.moved / elapsed, self.bytes / 1e6 / elapsed

    def eta_s(self) -> float | None:
        files_per_s, _ = self.rates()
        left = self.total - self.moved_before - self.moved - self.failed
        return left / files_per_s if files_per_s > 0 and left >= 0 else None


class RunProgress:
    """Rich bars in a terminal, for an ingest (uploaded, registered) or a retrieve (downloaded),
    with files/s, MB/s and failures below them."""

    def __init__(self, console: Console, verb: str = "uploaded"):
        self._lock = threading.Lock()
        self.tally = Tally()
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.moved_task = self.progress.add_task(verb, total=None)
        self.done_task = self.progress.add_task("registered", total=None) if verb == "uploaded" else None
        self.live = Live(Group(self.progress, Text("")), console=console, refresh_per_second=4, transient=False)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.tally.count(event)
            t = self.tally
            self.progress.update(self.moved_task, total=t.total or None, completed=t.moved_before + t.moved)
            if self.done_task is not None:
                self.progress.update(self.done_task, total=t.total or None, completed=t.done_before + t.done)
            files_per_s, mb_per_s = t.rates()
            status = f"{files_per_s:8.1f} files/s  {mb_per_s:8.1f} MB/s  {human_bytes(t.bytes)}  failed {t.failed}"
            lines = [f"{status}  {t.waiting_line()}".rstrip()] + ([f"workers: {w}"] if (w := t.workers_line()) else [])
            self.live.update(Group(self.progress, Text("\n".join(lines))))

    def __enter__(self) -> RunProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)


class ProgressLog:
    """Without a terminal: one line every `every` seconds while events arrive, e.g.
    `uploaded 12,000/500,000, registered 11,000, failed 0; 204.1 files/s, 1.2 MB/s; ETA 38 min`."""

    def __init__(self, console: Console, verb: str = "uploaded", every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self.console, self.verb, self.every = console, verb, every
        self.tally = Tally(clock)
        self.last = self.tally.started

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.tally.count(event)
            if event.kind in (Kind.SERVICE_DOWN, Kind.SERVICE_UP):  # an outage is said at once
                self.console.print(self._outage_line(event), markup=False)
            now = self.tally.clock()
            if now - self.last < self.every:
                return
            self.last = now
            self.console.print(self.line(), markup=False)

    @staticmethod
    def _outage_line(event: Event) -> str:
        f, when = event.fields, time.strftime("%H:%M:%S")
        if event.kind == Kind.SERVICE_DOWN:
            return (f"{when} {f.get('target')} is down, waiting up to {f.get('patience', 0):.0f} s for it: "
                    f"{f.get('message')}")
        return f"{when} {f.get('target')} is back after {f.get('down_s', 0):.0f} s; going on"

    def line(self) -> str:
        t = self.tally
        files_per_s, mb_per_s = t.rates()
        eta = t.eta_s()
        parts = [f"{self.verb} {t.moved_before + t.moved:,}/{t.total:,}"]
        if self.verb == "uploaded":
            parts.append(f"registered {t.done_before + t.done:,}")
        parts.append(f"failed {t.failed:,}; {files_per_s:.1f} files/s, {mb_per_s:.1f} MB/s "
                     f"({human_bytes(t.bytes)} this session)")
        when = time.strftime("%H:%M:%S")
        waiting = f"; {t.waiting_line()}" if t.waiting else ""
        workers = f"; workers: {t.workers_line()}" if t.workers else ""
        return f"{when} " + ", ".join(parts) + (f"; ETA {eta / 60:.0f} min" if eta is not None else "") + waiting \
            + workers


class ReplicationRates:
    """Files/s, MB/s and ETA per destination of `rules watch`, from the first poll of this session
    to the latest: rates a resumed watch does not inflate with what was replicated before it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._first: dict[str, tuple[float, int, int]] = {}  # expression -> (time, ok, bytes_ok)
        self._latest: dict[str, tuple[float, int, int]] = {}

    def update(self, destinations) -> None:
        now = self.clock()
        for d in destinations:
            self._first.setdefault(d.rse_expression, (now, d.ok, d.bytes_ok))
            self._latest[d.rse_expression] = (now, d.ok, d.bytes_ok)

    def of(self, destination) -> tuple[float, float, float | None]:
        """(files/s, MB/s, ETA in s or None) of one destination (a `flows.rules.Destination`)."""
        start, ok0, bytes0 = self._first.get(destination.rse_expression, (0.0, 0, 0))
        now, ok, size = self._latest.get(destination.rse_expression, (start, ok0, bytes0))
        elapsed = now - start
        if elapsed <= 0:
            return 0.0, 0.0, None
        files_per_s, mb_per_s = (ok - ok0) / elapsed, (size - bytes0) / 1e6 / elapsed
        left = destination.files - destination.ok - destination.stuck
        return files_per_s, mb_per_s, (left / files_per_s if files_per_s > 0 else None)
