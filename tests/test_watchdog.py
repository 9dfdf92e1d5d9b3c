"""The storage watchdog's judgement, without a lake: the kernel's accept queue of a real listening
socket, and when a queue that stays full counts as a wedged server."""

from __future__ import annotations

import socket
import time

from nightlake.lake import listening
from nightlake.lake.watchdog import WEDGED_AFTER, Watch


def test_the_accept_queue_counts_connections_the_server_has_not_taken():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        assert listening.accept_queues().get(port) == 0
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            deadline = time.monotonic() + 5
            while listening.accept_queues().get(port) != 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert listening.accept_queues().get(port) == 3
            server.accept()[0].close()
            assert listening.accept_queues().get(port) == 2
        finally:
            for client in clients:
                client.close()
    assert listening.accept_queues().get(port) is None  # nothing listens any more


def test_a_port_is_wedged_only_when_its_queue_stays_full_for_the_whole_window():
    watch = Watch()
    assert not watch.wedged(1094, 2, now=100.0)
    assert not watch.wedged(1094, 5, now=100.0 + WEDGED_AFTER - 1)
    assert watch.wedged(1094, 1, now=100.0 + WEDGED_AFTER)


def test_an_empty_sample_or_no_listener_starts_the_window_again():
    watch = Watch()
    for queued in (0, None):
        watch.wedged(1094, 3, now=0.0)
        assert not watch.wedged(1094, queued, now=WEDGED_AFTER / 2)  # the server took them: it is alive
        assert not watch.wedged(1094, 3, now=WEDGED_AFTER + 1)      # a new window starts here
        assert watch.wedged(1094, 3, now=2 * WEDGED_AFTER + 1)
        watch.forget(1094)


def test_ports_are_judged_apart():
    watch = Watch()
    watch.wedged(1094, 3, now=0.0)
    assert not watch.wedged(1095, 3, now=WEDGED_AFTER)
    assert watch.wedged(1094, 3, now=WEDGED_AFTER)
