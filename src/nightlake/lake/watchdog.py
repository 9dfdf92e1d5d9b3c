"""The lake's storage watchdog: restarts an RSE's XRootD whose port has stopped accepting connections.

Why it exists: XRootD 5.5.3 (Debian 12's) can lose the job that accepts the next connection on one
of its ports. When a closing https link is dispatched twice (its log then says `XrdLink: Dispatch
on closed link`), the scheduler's queue drops the job queued behind it, and when that job is the
port's accept loop nothing ever accepts on that port again. The process lives on, connections pile
up in the kernel's accept queue, and every client waits for a handshake that never comes: Rucio's
uploads time out, and transfers fail with `SSL handshake failed: Connection timed out`. Later XRootD
releases reworked how the bridge closes links; the lake runs the one Debian ships.

How it tells: a server that is alive empties its accept queue at once, so a port whose queue held
connections at every sample for `WEDGED_AFTER` seconds is wedged, and its XRootD is restarted with
the fault that is in force (`faults.restart`). A port nothing listens on (an RSE down on purpose,
or stopped by a test) is left alone. Every restart is one line in the watchdog's log.

A lake component: `lake up` starts it after the storage, `lake down` stops it before.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from nightlake.lake import faults, listening, processes
from nightlake.lake.layout import RSES, Layout, RSESpec

NAME = "storage-watchdog"
INTERVAL, WEDGED_AFTER = 2.0, 20.0


def start(layout: Layout) -> processes.Proc:
    argv = [sys.executable, "-m", "nightlake.lake.watchdog", "--dir", str(layout.root)]
    return processes.start(layout.pids, NAME, argv, layout.logs / f"{NAME}.log", cwd=layout.root)


class Watch:
    """Since when each port's accept queue has been non-empty, sample after sample."""

    def __init__(self) -> None:
        self.since: dict[int, float] = {}

    def wedged(self, port: int, queued: int | None, now: float) -> bool:
        """True once `port` has had connections waiting at every sample for WEDGED_AFTER seconds."""
        if not queued:
            self.since.pop(port, None)
            return False
        return now - self.since.setdefault(port, now) >= WEDGED_AFTER

    def forget(self, *ports: int) -> None:
        for port in ports:
            self.since.pop(port, None)


def check(layout: Layout, rse: RSESpec, watch: Watch, now: float, queues: dict[int, int], log=print) -> None:
    """Restart the RSE's XRootD if one of its ports is wedged (`queues`: this sample's accept queues)."""
    ports = (layout.root_port(rse), layout.https_port(rse))
    wedged = [port for port in ports if watch.wedged(port, queues.get(port), now)]
    if not wedged:
        return
    proc = processes.read(layout.pids, f"xrootd-{rse.name}")
    if proc is None or not proc.alive():
        return
    waiting = ", ".join(f"port {port}: {queues[port]} connection(s)" for port in wedged)
    log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {rse.name}: XRootD (pid {proc.pid}) has not accepted a "
        f"connection for {WEDGED_AFTER:g} s ({waiting} waiting); restarting it")
    new = faults.restart(layout, rse.name)
    log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {rse.name}: XRootD restarted (pid {new.pid})")
    watch.forget(*ports)


def run(layout: Layout, stop: threading.Event) -> None:
    watch = Watch()
    while not stop.is_set():
        queues, now = listening.accept_queues(), time.monotonic()
        for rse in RSES:
            try:
                check(layout, rse, watch, now, queues, log=lambda line: print(line, flush=True))
            except Exception as error:  # one RSE's failed restart must not end the watch over the others
                print(f"{rse.name}: restart failed: {error}", flush=True)
        stop.wait(INTERVAL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nightlake.lake.watchdog", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help="the lake's directory")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(Layout.load_or_new(args.dir), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
