"""Life-cycle promises that need a lake of their own: `down` stops every process it started
(checked by PID), and a busy port is refused with exit code 2 naming the port and its holder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from conftest import TEST_PORT_BASE, nightlake
from nightlake.lake import control, processes
from nightlake.lake.layout import Layout
from nightlake.lake.system import port_in_use

pytestmark = pytest.mark.lake


def free_port_base(start: int = TEST_PORT_BASE + 200) -> int:
    """A port base whose every lake port is free now, so these lakes meet no one else's."""
    for base in range(start, start + 2000, 100):
        if not any(port_in_use(port) for port in Layout(Path("/unused"), base, Path("/unused")).ports().values()):
            return base
    pytest.skip("no free block of lake ports")


def test_down_leaves_no_process_of_the_lake_running(scratch):
    root = scratch / "lake"
    try:
        nightlake("lake", "up", "--dir", str(root), "--port-base", str(free_port_base()))
        layout = Layout.load_or_new(root)
        started = processes.recorded(layout.pids)
        assert len(started) == len(control.components(layout)) and all(p.alive() for p in started)
    finally:  # a failed start or check must not leave this lake running
        nightlake("lake", "down", "--dir", str(root), "--purge", check=False)
    assert not any(p.alive() for p in started)
    assert not root.exists()


def test_port_in_use_is_refused_with_the_port_and_its_holder(scratch):
    root, base = scratch / "lake", free_port_base()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        result = nightlake("lake", "up", "--dir", str(root), "--port-base", str(base), check=False)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert f"port {base + 1}" in message and "postgresql" in message
    assert f"pid {os.getpid()}" in message
    assert not (root / "pg").exists()
