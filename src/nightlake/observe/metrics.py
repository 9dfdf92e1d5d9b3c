"""Prometheus metrics of a live run (`--metrics-port`): one more listener on the event stream.

Like the progress bar and the event log, `Metrics` only listens (see `events`); the pipeline does
not know it exists. It keeps its own `CollectorRegistry`, not prometheus-client's global one, so
two runs (or two tests) in one process never collide. The endpoint listens on loopback only: the
numbers are harmless, but a data-taking host should not open ports by default.

Event kinds counted (`events.Kind`; any other kind is ignored, so new kinds never break a run):

    UPLOAD_DONE, DOWNLOAD_DONE           files/bytes moved (per file, live)
    REGISTER_BATCH, ATTACH_BATCH,
    DONE_BATCH                           files (and bytes when given) per stage
    FILE_FAILED                          failed files by error class
    QUARANTINE                           files set aside (missing required metadata)
    RETRY                                retries by target and error class
    QUEUE_DEPTH                          batches waiting per catalog stage (a gauge)
    SERVICE_DOWN, SERVICE_UP             1 while a target is down and the run waits for it (a gauge)
    RULES_PROGRESS                       replication ok/replicating/stuck, summed over rules
    RUN_START                            files in the run
    DAEMON_LATENCY, DAEMON_BACKLOG       a daemon's trigger-to-registered latency (a histogram) and
                                         the triggers waiting (a gauge)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from nightlake import BadInput
from nightlake.observe.events import Event, EventBus, Kind

# Event kind -> stage label; moved bytes count per file (`*.done`), not per batch (no double count).
STAGES = {Kind.UPLOAD_DONE: "upload", Kind.REGISTER_BATCH: "register", Kind.ATTACH_BATCH: "attach",
          Kind.DONE_BATCH: "done", Kind.DOWNLOAD_DONE: "retrieve"}
RULE_STATES = ("ok", "replicating", "stuck")
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)  # seconds: the daemon's target is 10 s


class Metrics:
    """Event listener that keeps prometheus counters and gauges up to date; thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.files = Counter("nightlake_files", "Files through each stage", ["stage"], registry=r)
        self.bytes = Counter("nightlake_bytes", "Bytes through each stage", ["stage"], registry=r)
        self.failed = Counter("nightlake_files_failed", "Files failed, by error class", ["error_class"],
                              registry=r)
        self.quarantined = Counter("nightlake_files_quarantined", "Files set aside", registry=r)
        self.retries = Counter("nightlake_retries", "Retried calls", ["target", "error_class"], registry=r)
        self.queue = Gauge("nightlake_queue_depth", "Batches waiting for each catalog stage", ["stage"], registry=r)
        self.down = Gauge("nightlake_service_down", "1 while the run waits for a target that is down",
                          ["target"], registry=r)
        self.run_files = Gauge("nightlake_run_files", "Files in the run", registry=r)
        self.worker_files = Counter("nightlake_worker_files", "Files moved by each cluster worker", ["worker"],
                                    registry=r)
        self.worker_bytes = Counter("nightlake_worker_bytes", "Bytes moved by each cluster worker", ["worker"],
                                    registry=r)
        self.rule_files = Gauge("nightlake_rule_files", "Files of the run's rules by replication state",
                                ["state"], registry=r)
        self.last_event = Gauge("nightlake_last_event_timestamp_seconds", "When the last event came (a stall "
                                "detector)", registry=r)
        self.latency = Histogram("nightlake_daemon_latency_seconds", "Trigger to registered, per file",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.backlog = Gauge("nightlake_daemon_backlog", "Triggers found, not yet registered", registry=r)
        self._rules: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        f, kind = event.fields, event.kind
        self.last_event.set(event.ts)
        if kind in STAGES:
            self.files.labels(STAGES[kind]).inc(f.get("files", 0))
            if "bytes" in f:
                self.bytes.labels(STAGES[kind]).inc(f["bytes"])
        elif kind == Kind.FILE_FAILED:
            self.failed.labels(f.get("error_class", "unclassified")).inc(f.get("files", 1))
        elif kind == Kind.QUARANTINE:
            self.quarantined.inc(f.get("files", 1))
        elif kind == Kind.RETRY:
            self.retries.labels(f.get("target", "?"), f.get("error_class", "?")).inc()
        elif kind == Kind.QUEUE_DEPTH:
            self.queue.labels(f.get("stage", "?")).set(f.get("depth", 0))
        elif kind in (Kind.SERVICE_DOWN, Kind.SERVICE_UP):
            self.down.labels(f.get("target", "?")).set(int(kind == Kind.SERVICE_DOWN))
        elif kind == Kind.RUN_START:
            self.run_files.set(f.get("files", 0))
        elif kind == Kind.WORKER_BATCH:
            self.worker_files.labels(str(f.get("worker", "?"))).inc(f.get("files", 0))
            self.worker_bytes.labels(str(f.get("worker", "?"))).inc(f.get("bytes", 0))
        elif kind == Kind.RULES_PROGRESS:
            self._rule_progress(f)
        elif kind == Kind.DAEMON_LATENCY:
            for seconds in f.get("seconds", ()):
                self.latency.observe(seconds)
        elif kind == Kind.DAEMON_BACKLOG:
            self.backlog.set(f.get("files", 0))

    def _rule_progress(self, fields: dict[str, Any]) -> None:
        """Each event is one rule's latest counts; the gauges are the sums over all rules."""
        with self._lock:
            self._rules[fields.get("rule_id") or fields.get("dataset", "?")] = fields
            for state in RULE_STATES:
                self.rule_files.labels(state).set(sum(r.get(state, 0) for r in self._rules.values()))


@dataclass
class MetricsServer:
    """A running endpoint: `http://127.0.0.1:{port}/metrics`; `close()` stops it."""

    metrics: Metrics
    port: int
    server: Any  # the WSGI server prometheus-client started
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(port: int, bus: EventBus, addr: str = "127.0.0.1") -> MetricsServer:
    """Subscribe a fresh `Metrics` to `bus` and serve it on `addr:port` (0 = any free port).

    A port already in use is the user's to fix: BadInput (exit code 2) before anything starts."""
    metrics = Metrics()
    try:
        server, thread = start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as exc:
        raise BadInput(f"--metrics-port {port}: cannot listen on {addr}:{port} ({exc.strerror})") from None
    bus.subscribe(metrics)
    return MetricsServer(metrics, server.server_port, server, thread)


@contextmanager
def serving(port: int | None, bus: EventBus) -> Iterator[MetricsServer | None]:
    """`serve` for the duration of a command when a port was asked for; nothing otherwise."""
    if port is None:
        yield None
        return
    server = serve(port, bus)
    try:
        yield server
    finally:
        server.close()
