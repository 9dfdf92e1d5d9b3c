"""`nightlake daemon` against the lake: files written on site into ONSITE-DAQ's storage area are
registered in place, once, with their metadata, in their datasets and the night's container,
with rules, through restarts and a SIGKILL; bad files go to invalid/; one daemon per directory.
Checked with the stock rucio CLI and xrdfs, not only with our journal."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from daemon_helpers import (
    counts,
    events,
    night,
    start,
    stop,
    triggers_left,
    watch_dir,
    write,
    writing,
)
from ingest_helpers import listed_by_cli, nightlake, rucio
from lake_daemons import wait_for
from nightlake.lake.layout import DAQ, SCOPE
from nightlake.lake.xrootd import storage_area

pytestmark = pytest.mark.lake


def _all_done(run, total):
    def done():
        """every file done and every trigger removed"""
        return counts(run).get("done") == total
    return done


def _datasets_closed(files):
    def closed():
        """every dataset closed"""
        return all("is_open:         False" in rucio("did", "metadata", "list", f"cta:{d}")
                   for d in {f.dataset for f in files})
    return closed


def _assert_registered_in_place(lake, watch, files):
    """Each dataset holds exactly its files, on ONSITE-DAQ, with the bytes and adler32 of the
    files the writer wrote, at the PFNs of their paths (xrdfs lists them there)."""
    import zlib

    area = storage_area(lake, DAQ, SCOPE)
    for dataset in sorted({f.dataset for f in files}):
        expected = {}
        for f in files:
            if f.dataset == dataset:
                data = (watch / f.dataset / f.name).read_bytes()
                expected[(watch / f.dataset / f.name).relative_to(area).as_posix()] = \
                    (len(data), f"{zlib.adler32(data):08x}")
        assert listed_by_cli(dataset, DAQ.name) == expected, dataset
    one = files[0]
    pfn_path = f"//rucio/cta/{watch.name}/{one.dataset}/{one.name}"
    listing = subprocess.run(["xrdfs", f"root://127.0.0.1:{lake.root_port(DAQ)}", "ls", "-l", pfn_path],
                             capture_output=True, text=True, check=True).stdout
    assert str((watch / one.dataset / one.name).stat().st_size) in listing


@pytest.mark.minute
def test_a_writer_at_100_files_per_s_for_a_minute_is_registered_in_place_once(lake, tmp_path):
    """6,000 files at 100 files/s: all registered once, with metadata, in their datasets and the
    night's container, each dataset with its rule from its creation on and closed once quiet."""
    watch, run = watch_dir(lake, "minute"), tmp_path / "run"
    files = night(tmp_path, "Minute-Site", datasets=4, files=1500)
    daemon = start(watch, run, "--rule", DAQ.name, "--metrics-port", "0", "--batch-age", "5")  # the default
    try:
        with writing(files, watch, rate=100):
            pass
        wait_for(_all_done(run, len(files)), timeout=600)
        wait_for(_datasets_closed(files), timeout=300)
    finally:
        assert stop(daemon) == 0
    assert not triggers_left(watch)
    assert sum(e["files"] for e in events(run, "register.batch")) == len(files)  # once
    _assert_registered_in_place(lake, watch, files)
    container = f"cta:{files[0].meta['site']}_20260314"
    assert {f"cta:{f.dataset}" for f in files} <= set(rucio("did", "content", "list", container, "--short").split())
    rules = rucio("rule", "list", "--account", "root")
    assert all(f.dataset in rules for f in files)
    meta = rucio("did", "metadata", "list", "--plugin", "ALL", f"cta:{watch.name}/{files[-1].dataset}/{files[-1].name}")
    assert f"telescope:       {files[-1].meta['telescope']}" in meta
    latencies = [e["latency_max"] for e in events(run, "daemon.batch") if "latency_max" in e]
    print(f"trigger-to-registered, worst per batch: max {max(latencies):.1f} s over {len(latencies)} batches")


def test_triggers_written_before_and_after_a_restart_are_each_registered_once(lake, tmp_path):
    watch, run = watch_dir(lake, "restart"), tmp_path / "run"
    files = night(tmp_path, "Restart-Site", datasets=2, files=60)
    write(files[:70], watch)  # before the daemon starts
    daemon = start(watch, run)
    wait_for(_all_done(run, 70), timeout=300)
    assert stop(daemon) == 0
    write(files[70:], watch)  # while it is down
    daemon = start(watch, run)
    try:
        wait_for(_all_done(run, len(files)), timeout=300)
    finally:
        assert stop(daemon, signal.SIGINT) == 0
    assert not triggers_left(watch)
    assert sum(e["files"] for e in events(run, "register.batch")) == len(files)
    _assert_registered_in_place(lake, watch, files)


def test_a_daemon_killed_mid_batch_resumes_from_its_journal(lake, tmp_path):
    watch, run = watch_dir(lake, "sigkill"), tmp_path / "run"
    files = night(tmp_path, "Kill-Site", datasets=2, files=300)
    write(files, watch)
    daemon = start(watch, run, "--batch", "50")
    wait_for(lambda: 0 < counts(run).get("done", 0) < len(files) or None, timeout=300, interval=0.05)
    daemon.kill()
    daemon.wait()
    assert triggers_left(watch)  # work was left
    daemon = start(watch, run, "--batch", "50")
    try:
        wait_for(_all_done(run, len(files)), timeout=300)
        wait_for(lambda: not triggers_left(watch), timeout=60)
    finally:
        assert stop(daemon) == 0
    _assert_registered_in_place(lake, watch, files)


def test_a_corrupted_fits_file_goes_to_invalid_with_its_reason(lake, tmp_path):
    watch, run = watch_dir(lake, "corrupt"), tmp_path / "run"
    files = night(tmp_path, "Corrupt-Site", datasets=1, files=4)
    write(files, watch)
    bad = watch / files[1].dataset / files[1].name
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF  # a bit flipped in the data: DATASUM no longer holds
    bad.write_bytes(bytes(data))
    (watch / "ghost.fits.trigger").symlink_to("ghost.fits")  # a trigger without its file
    daemon = start(watch, run)
    try:
        wait_for(_all_done(run, len(files) - 1), timeout=300)
        wait_for(lambda: counts(run).get("quarantined") == 1, timeout=60)
    finally:
        assert stop(daemon) == 0
    moved = watch / "invalid" / files[1].dataset / files[1].name
    assert moved.read_bytes() == bytes(data) and not bad.exists()
    assert not (watch / files[1].dataset / (files[1].name + ".trigger")).exists()
    invalid = events(run, "file.invalid")
    assert len(invalid) == 1 and "DATASUM" in invalid[0]["reason"]
    assert [e["trigger"] for e in events(run, "trigger.refused")] == [str(watch / "ghost.fits.trigger")]
    assert "quarantined" in nightlake("status", str(run)).stdout
    _assert_registered_in_place(lake, watch, [f for f in files if f is not files[1]])


def test_a_second_daemon_on_the_same_directory_exits_2_naming_the_first(lake, tmp_path):
    watch = watch_dir(lake, "twice")
    first = start(watch, tmp_path / "run1")
    try:
        wait_for(lambda: (watch / ".nightlake-daemon.lock").exists() and
                 (watch / ".nightlake-daemon.lock").read_text().strip() == str(first.pid), timeout=60)
        second = start(watch, tmp_path / "run2")
        assert second.wait(timeout=120) == 2
        log = (tmp_path / "run2.log").read_text()
        assert f"PID {first.pid}" in log and len(log.strip().splitlines()) == 1
    finally:
        assert stop(first) == 0


def test_a_directory_outside_the_rses_storage_area_is_refused_before_a_run_is_made(lake, scratch):
    run = scratch / "run"
    result = nightlake("daemon", str(scratch), "--rse", DAQ.name, "--scope", SCOPE, "--run", str(run))
    assert result.returncode == 2 and "is not in the storage area of scope cta on ONSITE-DAQ" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not run.exists()
    hashed = nightlake("daemon", str(watch_dir(lake, "hashed")), "--rse", "ONSITE", "--scope", SCOPE, "--run", str(run))
    assert hashed.returncode == 2 and "not 'identity'" in hashed.stderr and not run.exists()


def test_a_daemon_rides_through_a_restart_of_the_rucio_server(lake, tmp_path):
    """The catalog goes away mid-stream and comes back within the patience window: nothing fails,
    every file is registered once."""
    from test_outage_lake import _restart

    watch, run = watch_dir(lake, "outage"), tmp_path / "run"
    files = night(tmp_path, "Outage-Site", datasets=2, files=150)
    write(files, watch)
    daemon = start(watch, run, "--batch", "50", "--patience", "300")
    try:
        wait_for(lambda: counts(run).get("done", 0) >= 50, timeout=300, interval=0.05)
        _restart(lake, "rucio-server")
        wait_for(_all_done(run, len(files)), timeout=600)
    finally:
        assert stop(daemon) == 0
    assert counts(run).get("failed", 0) == 0 and not triggers_left(watch)
    assert {e["target"] for e in events(run, "service.down")} == {"catalog"}
    _assert_registered_in_place(lake, watch, files)


def test_with_inotify_triggers_are_taken_as_they_appear_without_a_rescan(lake, tmp_path):
    watch, run = watch_dir(lake, "inotify"), tmp_path / "run"
    files = night(tmp_path, "Inotify-Site", datasets=2, files=40)
    daemon = start(watch, run, "--inotify", "--rescan", "3600")  # one rescan, at the start
    try:
        wait_for(lambda: (run / "events.jsonl").exists(), timeout=120, interval=0.2)
        time.sleep(1)  # the first rescan is over: what follows is seen by inotify only
        write(files, watch, rate=100)  # into dataset directories made after the watch began
        wait_for(_all_done(run, len(files)), timeout=300)
        wait_for(lambda: not triggers_left(watch), timeout=60)
    finally:
        assert stop(daemon) == 0
    _assert_registered_in_place(lake, watch, files)
