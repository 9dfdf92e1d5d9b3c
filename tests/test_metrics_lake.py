"""`--metrics-port` on a real ingest: Prometheus can scrape the run while it goes on, and what it
sees never runs ahead of the journal."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from conftest import NIGHTLAKE, free_port, scrape
from ingest_helpers import summary, write_spec
from nightlake.lake.layout import RSES

pytestmark = pytest.mark.lake


def _scrape(port: int) -> dict[tuple[str, tuple], float] | None:
    """A scrape, or None while nothing listens on the port."""
    try:
        return scrape(port)
    except requests.ConnectionError:
        return None


def test_a_running_ingest_is_scraped_on_its_metrics_port(lake, scratch):
    spec = write_spec(scratch / "night.toml", "METRICS", datasets=2, files=300, size="20 kB")
    port, run = free_port(), scratch / "run"
    proc = subprocess.Popen([NIGHTLAKE, "ingest", str(spec), "--rse", RSES[0].name, "--run", str(run),
                             "--batch", "50", "--workers", "2", "--metrics-port", str(port), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    scrapes = []
    while proc.poll() is None:
        if (values := _scrape(port)) is not None:
            scrapes.append(values)
        time.sleep(0.05)
    _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert scrapes, "the endpoint never answered while the ingest ran"

    uploads = [s.get(("nightlake_files_total", (("stage", "upload"),)), 0) for s in scrapes]
    assert uploads == sorted(uploads) and max(uploads) <= 600  # a counter: never down, never past the run
    assert any(s.get(("nightlake_run_files", ())) == 600 for s in scrapes)
    assert max(uploads) > 0, "no scrape saw an upload"
    assert summary(run)["files"]["done"] == 600
    assert _scrape(port) is None  # the endpoint goes with the command
