"""What every flow does around its work, written once: its events logged in the run directory,
its retries reported as events, and its summary written at the end, whatever happened.

Ingest, retrieve and `rules` all build their catalog and their storage retry policies here, so a
retry of any call, to any target, becomes a `retry` event that progress, metrics and the report
count the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryEvent, RetryPolicy
from nightlake.observe.events import LIVE_ONLY, EventBus, EventLog, Kind
from nightlake.runs.rundir import RunDir

MESSAGE_CHARS = 300  # of a retried call's message in its event


def retry_reporter(bus: EventBus) -> Callable[[RetryEvent], None]:
    """Retries are data too: each one becomes a `retry` event."""
    def report(event: RetryEvent) -> None:
        bus.emit(Kind.RETRY, target=event.target, error_class=event.error_class.value, attempt=event.attempt,
                 delay=round(event.delay, 3), message=event.message[:MESSAGE_CHARS])
    return report


def retry_policy(bus: EventBus, target: str, **options: Any) -> RetryPolicy:
    """The one retry policy for `target` (an RSE, or "catalog" with catalog=True), reporting to `bus`."""
    return RetryPolicy(target=target, on_retry=retry_reporter(bus), **options)


def open_catalog(bus: EventBus) -> Catalog:
    return Catalog(retry_policy(bus, "catalog", catalog=True))


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
