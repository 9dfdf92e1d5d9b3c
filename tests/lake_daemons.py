"""The lake's own daemons, paused or killed by PID inside a test and brought back by `lake up`
(which starts only what is not running), so a test can watch Rucio without a conveyor, or a
conveyor that died mid-transfer."""

from __future__ import annotations

import contextlib
import signal
import time

from ingest_helpers import nightlake
from nightlake.lake import processes

CONVEYOR = ("conveyor-submitter", "conveyor-poller", "conveyor-finisher")


def kill(lake, *names: str, sig: int = signal.SIGKILL) -> None:
    """Stop the named daemons of the test lake by the PIDs it recorded."""
    for name in names:
        proc = processes.read(lake.pids, name)
        assert proc is not None and proc.alive(), f"{name} is not running"
        processes.stop(lake.pids, proc, sig)


def restart(lake) -> None:
    result = nightlake("lake", "up", "--dir", str(lake.root))
    assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def stopped(lake, *names: str):
    """The named daemons stopped for the duration of the block, running again after it."""
    kill(lake, *names, sig=signal.SIGTERM)
    try:
        yield
    finally:
        restart(lake)


def wait_for(predicate, timeout: float = 180, interval: float = 1.0):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s.
    A bound, not a timed assertion: the lake's daemons sleep 1-5 s between passes."""
    deadline = time.monotonic() + timeout
    while True:
        if value := predicate():
            return value
        assert time.monotonic() < deadline, f"gave up after {timeout} s waiting for {predicate.__doc__ or predicate}"
        time.sleep(interval)
