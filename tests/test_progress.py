"""Progress from the event stream: a resumed run counts from where it stands, and a run without a
terminal still says how it is going, at a bounded rate."""

from __future__ import annotations

import io

from rich.console import Console

from nightlake.cli.progress import ProgressLog, Tally
from nightlake.observe.events import Event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(kind: str, **fields) -> Event:
    return Event(kind, fields)


def test_a_resumed_run_counts_what_was_done_before_and_rates_only_this_session():
    clock = Clock()
    tally = Tally(clock)
    tally.count(_event("run.start", files=1000, uploaded=600, done=500))
    for _ in range(100):
        tally.count(_event("upload.done", files=1, bytes=2_000_000))
    tally.count(_event("done.batch", files=100))
    clock.now += 10
    assert (tally.moved_before + tally.moved, tally.done_before + tally.done) == (700, 600)
    assert tally.rates() == (10.0, 20.0)
    assert tally.eta_s() == 30.0  # 300 files left at 10 files/s


def test_failed_files_are_not_waited_for():
    clock = Clock()
    tally = Tally(clock)
    tally.count(_event("run.start", files=10, done=0))
    tally.count(_event("download.done", files=1, bytes=5))
    tally.count(_event("file.failed", files=9, error_class="permanent"))
    clock.now += 1
    assert tally.eta_s() == 0


def test_the_log_prints_one_line_per_interval_while_events_arrive():
    clock, buffer = Clock(), io.StringIO()
    log = ProgressLog(Console(file=buffer, width=200), "uploaded", every=30, clock=clock)
    log(_event("run.start", files=500_000, uploaded=0, done=0))
    for second in range(95):
        clock.now += 1
        log(_event("upload.done", files=1, bytes=1_000_000))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    assert "uploaded 30/500,000, registered 0, failed 0; 1.0 files/s, 1.0 MB/s" in lines[0]
    assert lines[-1].endswith("ETA 8332 min")


def test_a_retrieve_log_says_downloaded_and_has_no_registered_count():
    clock, buffer = Clock(), io.StringIO()
    log = ProgressLog(Console(file=buffer, width=200), "downloaded", every=0, clock=clock)
    log(_event("run.start", files=4, done=1))
    clock.now += 1
    log(_event("download.done", files=1, bytes=10))
    last = buffer.getvalue().splitlines()[-1]
    assert "downloaded 2/4, failed 0" in last and "registered" not in last
