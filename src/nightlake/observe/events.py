"""The event stream: transfers report what happened, listeners account for it.

As in rclone's `fs/accounting`, the flows never draw progress or write reports themselves: they
`emit` small events of the kinds named in `Kind`, and listeners - the progress display, the
metrics, `EventLog`, the report reading the log later - each keep their own account of the same
kinds. The bus is synchronous (a listener runs in the emitting thread), so listeners must be
quick and thread-safe.

`EventLog` writes `RUNDIR/events.jsonl` for the report. It is a record of *timing*, not of truth:
it buffers lines and may lose the last second of events in a crash; the journal is what resume
trusts. Values that look like credentials are redacted before anything is written.
"""

from __future__ import annotations

import enum
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Kind(enum.StrEnum):
    """Every kind of event a flow emits, with the fields it carries. The values are what the event
    log holds, so a report reads logs written by earlier versions."""

    RUN_PLANNED = "run.planned"  # files, datasets: the source is journaled
    RUN_START = "run.start"  # files, done, uploaded (ingest), rse, scheme: a session starts
    RUN_REQUEUED = "run.requeued"  # files: failed files given another go
    RUN_END = "run.end"  # complete, failed
    RECONCILE_STORAGE = "reconcile.storage"  # uploaded, replanned, changed: uncertain uploads settled
    RECONCILE_CATALOG = "reconcile.catalog"  # registered, uploaded, adopted: registrations found in Rucio
    RECONCILE_LOCAL = "reconcile.local"  # done, replanned: uncertain downloads settled
    RECONCILE_MISSING = "reconcile.missing"  # replanned: downloaded files gone from disk
    DATASETS_CREATED = "datasets.created"  # datasets
    CONTAINERS_CREATED = "containers.created"  # containers, existing: CTAO's hierarchy above the datasets
    UPLOAD_DONE = "upload.done"  # files, bytes, rse: one file stored (live only)
    UPLOAD_BATCH = "upload.batch"  # files, bytes, rse, in_place: a batch of uploads journaled
    REGISTER_BATCH = "register.batch"  # files, calls, rse: replicas added
    ATTACH_BATCH = "attach.batch"  # files, calls: attached to their datasets
    DONE_BATCH = "done.batch"  # files, bytes: metadata set, the files are done
    DOWNLOAD_DONE = "download.done"  # files, bytes, rse: one file retrieved (live only)
    RETRIEVE_BATCH = "retrieve.batch"  # files, bytes: a batch of downloads journaled
    WORKER_BATCH = "worker.batch"  # worker, files, bytes, seconds: a cluster worker's batch moved
    WORKER_LOST = "worker.lost"  # files, message: a batch lost with its cluster worker, settled again
    SOURCE_SKIPPED = "source.skipped"  # reason, files, sample: entries of a directory source not ingested
    QUARANTINE = "quarantine"  # files, reason: files set aside (missing metadata), never ingested
    FILE_FAILED = "file.failed"  # files, error_class, message
    RETRY = "retry"  # target, error_class, attempt, delay, message
    SERVICE_DOWN = "service.down"  # target, message, patience: a target went down; the run waits
    SERVICE_UP = "service.up"  # target, down_s: it came back; the run goes on
    RULE_ADDED = "rule.added"  # dataset, rule_id, rse_expression, existed
    DATASET_CLOSED = "dataset.closed"  # dataset
    QUEUE_DEPTH = "queue.depth"  # stage, depth: batches waiting for a catalog stage (live only)
    RULES_PROGRESS = "rules.progress"  # rule_id, dataset, rse_expression, state, ok, replicating, stuck
    REPLICATION_PROGRESS = "replication.progress"  # rse_expression, rules, files, ok, replicating, stuck,
    #   bytes, bytes_ok, queued, active, failed: one destination at one poll of `rules watch`
    REPLICATION_ERROR = "replication.error"  # group, count, rses, sample
    DAEMON_BATCH = "daemon.batch"  # files, backlog, latency_p50, latency_max: a daemon's files found done
    DAEMON_LATENCY = "daemon.latency"  # seconds: trigger-to-registered of each file of a batch (live only)
    DAEMON_BACKLOG = "daemon.backlog"  # files: triggers found and not yet registered (live only)
    FILE_INVALID = "file.invalid"  # path, moved_to, reason: a bad file set aside in invalid/
    TRIGGER_REFUSED = "trigger.refused"  # trigger, reason: its data file is missing or not a regular file


LIVE_ONLY = frozenset({Kind.UPLOAD_DONE, Kind.DOWNLOAD_DONE, Kind.QUEUE_DEPTH, Kind.DAEMON_LATENCY,
                       Kind.DAEMON_BACKLOG})
"""Per-file and gauge kinds: they feed the live display and the metrics; the event log keeps the batches."""


@dataclass(frozen=True)
class Event:
    kind: Kind
    fields: dict[str, Any] = field(default_factory=dict)  # counts, bytes, rse, error_class ...
    ts: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class EventBus:
    """Fan each event out to every subscribed listener, in subscription order."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)  # copy-on-write: emit needs no lock

    def emit(self, kind: Kind, **fields: Any) -> None:
        event = Event(kind, fields)
        for listener in self._listeners:
            listener(event)


_SECRET_KEY = re.compile(r"token|passw|secret|authori[sz]ation|cookie|credential|proxy|signature", re.I)
_SECRET_IN_TEXT = re.compile(
    r"(?i)(bearer\s+|x-rucio-auth-token[:=]\s*|[?&](?:authz|access_token|token|X-Amz-Signature)=)"
    r"[^\s&\"']+")
_REDACTED = "<redacted>"


def redact(value: Any, key: str = "") -> Any:
    """`value` with credentials replaced: secret-named keys, bearer tokens, signed-URL parameters."""
    if key and _SECRET_KEY.search(key):
        return _REDACTED
    if isinstance(value, str):
        return _SECRET_IN_TEXT.sub(lambda m: m.group(1) + _REDACTED, value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


class EventLog:
    """Listener that appends events as JSON lines, in batches; use as a context manager.

    One line: {"ts": 1767225600.123, "kind": "upload.done", ...fields}. Lines are written when
    `flush_every` events are waiting or `flush_seconds` have passed, and on `close()`.
    """

    def __init__(self, path: Path | str, flush_every: int = 500, flush_seconds: float = 1.0):
        self._file = open(path, "a", encoding="utf-8")
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._flush_every, self._flush_seconds = flush_every, flush_seconds
        self._last_flush = time.monotonic()

    def __call__(self, event: Event) -> None:
        line = json.dumps({"ts": round(event.ts, 3), "kind": event.kind, **redact(event.fields)},
                          default=str)
        with self._lock:
            self._pending.append(line)
            due = time.monotonic() - self._last_flush >= self._flush_seconds
            if due or len(self._pending) >= self._flush_every:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._flush_locked()
                self._file.close()

    def _flush_locked(self) -> None:
        if self._pending:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()
        self._file.flush()
        self._last_flush = time.monotonic()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
