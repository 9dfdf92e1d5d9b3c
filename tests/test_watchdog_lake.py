"""The storage watchdog in the lake: an RSE's XRootD that has stopped accepting connections is
restarted with the fault that is in force, and says so in its log. The test stops the server with
SIGSTOP, which looks to its clients exactly like XRootD 5.5.3's lost accept job: the kernel queues
their connections and nobody takes them."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from nightlake.lake import faults, listening, processes, watchdog
from nightlake.lake.layout import RSES

pytestmark = pytest.mark.lake
RSE = next(r for r in RSES if r.name == "OFFSITE-B")


def _answers(lake) -> bool:
    """A WebDAV listing of the export, TLS verified both ways with the lake's credentials."""
    try:
        return requests.request("PROPFIND", f"https://127.0.0.1:{lake.https_port(RSE)}/rucio/", headers={"Depth": "0"},
                                verify=str(lake.ca_cert), cert=str(lake.proxy), timeout=5).status_code == 207
    except requests.RequestException:
        return False


def freeze(pid: int) -> None:
    """SIGSTOP the server and wait until every one of its threads has stopped: the signal is only
    sent by `kill`, and a thread running on another core could still accept a connection."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in Path(f"/proc/{pid}/task").iterdir()}
        if states == {"T"}:
            return
        time.sleep(0.05)
    raise AssertionError(f"XRootD (pid {pid}) did not stop: its threads are {states}")


def test_a_server_that_stops_accepting_is_restarted_with_its_fault(lake):
    faults.inject(lake, RSE.name, "readonly")
    stalled = processes.read(lake.pids, f"xrootd-{RSE.name}")
    waiting = []
    try:
        freeze(stalled.pid)
        waiting = [socket.create_connection(("127.0.0.1", lake.https_port(RSE)), timeout=5) for _ in range(2)]
        assert listening.accept_queues().get(lake.https_port(RSE)) >= 2
        deadline = time.monotonic() + watchdog.WEDGED_AFTER + 90
        while time.monotonic() < deadline and (stalled.alive() or not _answers(lake)):
            time.sleep(1)
        assert not stalled.alive(), "the stalled server is still there"
        assert _answers(lake), "the restarted server does not answer"
        assert "all.export /rucio r/o" in (lake.rse_dir(RSE) / "xrootd.cfg").read_text()  # its fault still on
    finally:
        for conn in waiting:
            conn.close()
        if stalled.alive():
            os.kill(stalled.pid, signal.SIGCONT)
        faults.clear(lake, RSE.name)
    log = (lake.logs / f"{watchdog.NAME}.log").read_text()
    assert f"{RSE.name}: XRootD (pid {stalled.pid}) has not accepted a connection" in log
    assert f"{RSE.name}: XRootD restarted" in log


def test_a_server_that_is_down_is_left_down(lake):
    faults.inject(lake, RSE.name, "down")
    try:
        time.sleep(watchdog.WEDGED_AFTER + 2 * watchdog.INTERVAL)
        assert processes.read(lake.pids, f"xrootd-{RSE.name}") is None
        assert listening.accept_queues().get(lake.https_port(RSE)) is None
    finally:
        faults.clear(lake, RSE.name)
    assert _answers(lake)
