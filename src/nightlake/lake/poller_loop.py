"""Rucio's stock conveyor-poller, one pass (`--run-once` mode) every few seconds, in one process.

Why not the poller daemon as it is: in daemon mode it marks every request it polls as processed
by itself and skips it for the next 600 s (`processed_at_delay` of `get_and_mark_next`, not
configurable). Production learns of finished transfers from FTS's messages (conveyor-receiver and
a message broker) and polls only as a fallback; the lake has no broker, so a transfer still
running when first polled would wait ten minutes. A run-once pass polls every SUBMITTED request;
this loop runs such passes back to back without paying Rucio's start-up time for each, and stops
on SIGTERM like the daemon. Each pass's heartbeat expires after 10 x (sleep - 1) s, so a killed
loop stops counting as a poller within seconds.

Runs under the Rucio server venv's python (it imports Rucio, never nightlake).
"""

from __future__ import annotations

import argparse
import logging
import signal

from rucio.common.logging import setup_logging
from rucio.core.topology import ExpiringObjectCache, Topology
from rucio.daemons.conveyor import poller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep-time", type=int, default=2, help="seconds between passes [2]")
    parser.add_argument("--fts-bulk", type=int, default=100, help="jobs per FTS bulk query [100]")
    parser.add_argument("--db-bulk", type=int, default=1000, help="requests per pass [1000]")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, poller.stop)
    setup_logging(process_name=poller.DAEMON_NAME)
    topology = ExpiringObjectCache(ttl=300, new_obj_fnc=lambda: Topology())
    logging.info("polling every %s s, one run-once pass at a time", args.sleep_time)
    while not poller.GRACEFUL_STOP.is_set():
        poller.poller(once=True, older_than=0, partition_wait_time=0, sleep_time=args.sleep_time,
                      fts_bulk=args.fts_bulk, db_bulk=args.db_bulk, cached_topology=topology)
        poller.GRACEFUL_STOP.wait(args.sleep_time)


if __name__ == "__main__":
    main()
