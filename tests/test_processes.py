"""How the lake starts a server (`processes.serve`): a start whose port is taken by a client
connection's source port is made again once the connection is gone; any other failed start is one
line with the server's own reason. Real processes on loopback, no lake."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading

import pytest

from conftest import TEST_PORT_BASE
from nightlake import BadInput
from nightlake.lake import listening, processes

PORT = TEST_PORT_BASE + 320


def server(port: int) -> list[str]:
    """A server that binds `port` as servers do (SO_REUSEADDR) and listens."""
    return [sys.executable, "-c", "import socket, time\n"
            "s = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1', {port}))\n"
            "s.listen()\n"
            "time.sleep(120)\n"]


@contextlib.contextmanager
def client_from(port: int):
    """A connected client socket whose source port is `port`, as the kernel gives an outgoing
    connection when its ephemeral range covers the port; yields the function that ends the
    connection. The far end closes first, so the port is free (not in TIME_WAIT) at once."""
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.bind(("127.0.0.1", port))
        client.connect(listener.getsockname())
        far, _ = listener.accept()

        def close():
            if client.fileno() != -1:
                far.close()
                client.recv(1)  # the far end's FIN
                client.close()

        try:
            yield close
        finally:
            close()


def serve(scratch, argv, port, timeout=20.0):
    return processes.serve(scratch / "pids", "server", argv, scratch / "server.log",
                           ready=lambda: bool(listening.bound(port)), what="the test server",
                           timeout=timeout, interval=0.05)


def test_a_port_taken_by_a_client_connection_is_waited_for(scratch):
    with client_from(PORT) as close:
        threading.Timer(1.5, close).start()
        proc = serve(scratch, server(PORT), PORT)
    try:
        assert proc.alive()
        assert "Address already in use" in (scratch / "server.log").read_text()  # the first start failed
        assert processes.read(scratch / "pids", "server") == proc
    finally:
        processes.stop(scratch / "pids", proc)


def test_a_port_still_taken_at_the_timeout_is_one_line(scratch):
    with client_from(PORT + 1), pytest.raises(BadInput, match=r"the test server exited at start: .*Address already in use"):
        serve(scratch, server(PORT + 1), PORT + 1, timeout=2)
    assert processes.read(scratch / "pids", "server") is None


def test_any_other_failed_start_is_not_repeated(scratch):
    argv = [sys.executable, "-c", "print('starting'); print('invalid setting: port = lots'); raise SystemExit(3)"]
    with pytest.raises(BadInput, match=r"exited at start: invalid setting: port = lots \(log: .*server.log\)$"):
        serve(scratch, argv, PORT + 2)
    assert (scratch / "server.log").read_text().count("starting") == 1
