"""The metrics endpoint: a listener on the event bus, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import pytest

from conftest import scrape
from nightlake import BadInput
from nightlake.observe import metrics
from nightlake.observe.events import EventBus


@pytest.fixture
def endpoint():
    bus = EventBus()
    server = metrics.serve(0, bus)  # port 0: the OS picks a free loopback port
    yield bus, server
    server.close()


def test_counts_files_and_bytes_per_stage(endpoint):
    bus, server = endpoint
    bus.emit("run.start", rse="ONSITE", scheme="https", files=10)
    for _ in range(3):
        bus.emit("upload.done", files=1, bytes=1000, rse="ONSITE")
    bus.emit("upload.batch", files=3, bytes=3000, rse="ONSITE")  # the per-file events already counted these
    bus.emit("register.batch", files=3, calls=1, rse="ONSITE")
    bus.emit("done.batch", files=3, bytes=3000)
    values = scrape(server.port)
    assert values[("nightlake_files_total", (("stage", "upload"),))] == 3
    assert values[("nightlake_bytes_total", (("stage", "upload"),))] == 3000
    assert values[("nightlake_files_total", (("stage", "register"),))] == 3
    assert values[("nightlake_bytes_total", (("stage", "done"),))] == 3000
    assert values[("nightlake_run_files", ())] == 10


def test_counts_failures_retries_and_quarantine_by_class(endpoint):
    bus, server = endpoint
    bus.emit("file.failed", files=2, error_class="permanent", message="closed")
    bus.emit("file.failed", files=1, error_class="transient_storage", message="timeout")
    bus.emit("retry", target="ONSITE", error_class="transient_storage", attempt=1, delay=0.5)
    bus.emit("retry", target="ONSITE", error_class="transient_storage", attempt=2, delay=1.0)
    bus.emit("quarantine", files=4, reason="missing required metadata: ['OBS_ID']")
    values = scrape(server.port)
    assert values[("nightlake_files_failed_total", (("error_class", "permanent"),))] == 2
    assert values[("nightlake_files_failed_total", (("error_class", "transient_storage"),))] == 1
    assert values[("nightlake_retries_total", (("error_class", "transient_storage"), ("target", "ONSITE")))] == 2
    assert values[("nightlake_files_quarantined_total", ())] == 4


def test_gauges_keep_the_latest_queue_depth_and_rule_progress(endpoint):
    bus, server = endpoint
    bus.emit("queue.depth", stage="register", depth=5)
    bus.emit("queue.depth", stage="register", depth=2)
    bus.emit("rules.progress", rule_id="a", ok=10, replicating=5, stuck=0)
    bus.emit("rules.progress", rule_id="b", ok=1, replicating=0, stuck=3)
    bus.emit("rules.progress", rule_id="a", ok=15, replicating=0, stuck=0)
    values = scrape(server.port)
    assert values[("nightlake_queue_depth", (("stage", "register"),))] == 2
    assert values[("nightlake_rule_files", (("state", "ok"),))] == 16
    assert values[("nightlake_rule_files", (("state", "stuck"),))] == 3


def test_two_endpoints_in_one_process_keep_separate_counts():
    first, second = EventBus(), EventBus()
    a, b = metrics.serve(0, first), metrics.serve(0, second)
    try:
        first.emit("done.batch", files=7, bytes=70)
        assert scrape(a.port)[("nightlake_files_total", (("stage", "done"),))] == 7
        assert ("nightlake_files_total", (("stage", "done"),)) not in scrape(b.port)
    finally:
        a.close(), b.close()


def test_listens_on_loopback_only(endpoint):
    _, server = endpoint
    assert server.server.server_address[0] == "127.0.0.1"


def test_a_busy_port_is_bad_input(endpoint):
    _, server = endpoint
    with pytest.raises(BadInput, match=f"--metrics-port {server.port}"):
        metrics.serve(server.port, EventBus())
