"""What every flow does around its work, written once: its events logged in the run directory,
its retries reported as events, and its summary written at the end, whatever happened.

Ingest, retrieve and `rules` all build their catalog and their storage retry policies here, so a
retry of any call, to any target, becomes a `retry` event, and an outage ridden through a
`service.down` and a `service.up` event, that progress, metrics and the report read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nightlake.catalog.breaker import Outage
from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryEvent, RetryPolicy
from nightlake.observe.events import LIVE_ONLY, EventBus, EventLog, Kind
from nightlake.runs.rundir import RunDir

MESSAGE_CHARS = 300  # of a retried call's message in its event
DEFAULT_PATIENCE = 600.0  # seconds: a service restart at 3 a.m. is ridden through, a dead one is not


def retry_reporter(bus: EventBus) -> Callable[[RetryEvent], None]:
    """Retries are data too: each one becomes a `retry` event."""
    def report(event: RetryEvent) -> None:
        bus.emit(Kind.RETRY, target=event.target, error_class=event.error_class.value, attempt=event.attempt,
                 delay=round(event.delay, 3), message=event.message[:MESSAGE_CHARS])
    return report


def outage_reporter(bus: EventBus) -> Callable[[Outage], None]:
    """An outage ridden through is said as it starts and as it ends (progress, metrics, report)."""
    def report(outage: Outage) -> None:
        if outage.down_s is None:
            bus.emit(Kind.SERVICE_DOWN, target=outage.target, patience=outage.patience,
                     message=outage.message[:MESSAGE_CHARS])
        else:
            bus.emit(Kind.SERVICE_UP, target=outage.target, down_s=round(outage.down_s, 1))
    return report


def retry_policy(bus: EventBus, target: str, patience: float = 0.0, **options: Any) -> RetryPolicy:
    """The one retry policy for `target` (an RSE, or "catalog" with catalog=True), reporting its
    retries and outages to `bus`, riding through an outage of up to `patience` seconds."""
    return RetryPolicy(target=target, on_retry=retry_reporter(bus), patience=patience,
                       on_outage=outage_reporter(bus), **options)


def open_catalog(bus: EventBus, patience: float = 0.0) -> Catalog:
    return Catalog(retry_policy(bus, "catalog", patience, catalog=True))


@contextmanager
def logged(run: RunDir, bus: EventBus) -> Iterator[None]:
    """Batch events into `RUNDIR/events.jsonl` while the block runs (per-file events stay live)."""
    with EventLog(run.events) as log:
        bus.subscribe(lambda event: event.kind in LIVE_ONLY or log(event))
        yield


def concluded(run: RunDir, bus: EventBus, work: Callable[[], None], summarize: Callable[[], dict]) -> dict:
    """Run `work`; whatever happens, write the summary and say how the run ended."""
    try:
        work()
    finally:
        summary = summarize()
        run.write_summary(summary)
        bus.emit(Kind.RUN_END, complete=summary["complete"], failed=summary["files"]["failed"])
    return summary
