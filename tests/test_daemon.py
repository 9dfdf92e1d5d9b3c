"""The daemon's parts that need no lake: a FITS file verified in one read, triggers found by a
rescan, a file named and described from its header, one daemon per directory."""

from __future__ import annotations

import os
import zlib

import pytest

from ingest_helpers import write_spec
from nightlake import BadInput
from nightlake.flows.daemon import lock, triggers
from nightlake.flows.daemon.describe import Invalid, Naming, describe
from nightlake.flows.generate import file_path, generate
from nightlake.night.fits.header import BadHeader
from nightlake.night.fits.verify import BadChecksum, verify
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec


@pytest.fixture
def written(tmp_path):
    """Two generated files under tmp_path/area/<dataset>/ and their plan entries."""
    files = list(Plan(load_spec(write_spec(tmp_path / "n.toml", "Unit-Site", 1, 2, size="9 kB"))).files())
    generate(files, tmp_path / "area")
    return tmp_path / "area", files


def test_a_generated_file_verifies_with_the_adler32_of_its_bytes(written):
    area, files = written
    path = file_path(area, files[0])
    verified = verify(path)
    assert verified.adler32 == f"{zlib.adler32(path.read_bytes()):08x}"
    assert verified.size == path.stat().st_size and verified.header["OBS_ID"] == 1


@pytest.mark.parametrize("damage, reason", [("flip-data", "DATASUM"), ("flip-header", "CHECKSUM"),
                                            ("truncate", "truncated")])
def test_a_damaged_file_fails_verification_with_what_is_wrong(written, damage, reason):
    area, files = written
    path = file_path(area, files[0])
    data = bytearray(path.read_bytes())
    if damage == "flip-data":
        data[-10] ^= 1
    elif damage == "flip-header":
        at = data.index(b"LST-")
        data[at + 4] = ord("9")
    else:
        del data[-2880:]
    path.write_bytes(bytes(data))
    with pytest.raises((BadHeader, BadChecksum), match=reason):
        verify(path)


def test_a_file_is_named_by_its_path_and_put_in_the_dataset_and_container_of_its_header(written):
    area, files = written
    described = describe(file_path(area, files[0]), area, "cta", Naming())
    assert described.record.name == f"{files[0].dataset}/{files[0].name}"
    assert described.record.dataset == "Unit-Site_20260314_obs000001_run000001"
    assert described.container == "Unit-Site_20260314"
    assert described.record.meta["telescope"] == files[0].meta["telescope"]


def test_a_file_without_the_metadata_its_names_or_require_need_is_invalid(written):
    area, files = written
    with pytest.raises(Invalid, match="missing required metadata: camera"):
        describe(file_path(area, files[0]), area, "cta", Naming(dataset="{site}_{camera}"))
    with pytest.raises(Invalid, match="missing required metadata: pointing"):
        describe(file_path(area, files[0]), area, "cta", Naming(), ("pointing",))
    not_fits = area / "notes.txt"
    not_fits.write_text("hello")
    with pytest.raises(Invalid, match="not a valid FITS file"):
        describe(not_fits, area, "cta", Naming())


def test_a_rescan_finds_ready_files_end_markers_and_refuses_triggers_without_their_file(written):
    area, files = written
    ready = file_path(area, files[0])
    (ready.parent / (ready.name + ".trigger")).symlink_to(ready.name)
    (area / "ghost.fits.trigger").symlink_to("ghost.fits")
    (ready.parent / f"{files[0].dataset}.end").touch()
    os.mkdir(area / "invalid")
    (area / "invalid" / "old.fits.trigger").touch()  # the invalid/ tree is never scanned
    found = triggers.scan(area)
    assert [t.data for t in found.ready] == [ready]
    assert found.refused == [(area / "ghost.fits.trigger", "its data file does not exist")]
    assert list(found.ended) == [files[0].dataset]


def test_a_second_lock_on_a_directory_is_refused_naming_the_holder(tmp_path):
    with lock.watching(tmp_path):
        with pytest.raises(BadInput, match=f"PID {os.getpid()}"):
            with lock.watching(tmp_path):
                pass
    with lock.watching(tmp_path):  # released with its holder
        pass


def test_the_metrics_hold_the_daemons_latency_histogram_and_backlog():
    from nightlake.observe.events import EventBus, Kind
    from nightlake.observe.metrics import Metrics

    bus, metrics = EventBus(), Metrics()
    bus.subscribe(metrics)
    bus.emit(Kind.DAEMON_LATENCY, seconds=[0.4, 3.0, 12.0])
    bus.emit(Kind.DAEMON_BACKLOG, files=42)
    value = metrics.registry.get_sample_value
    assert value("nightlake_daemon_latency_seconds_count") == 3
    assert value("nightlake_daemon_latency_seconds_bucket", {"le": "10.0"}) == 2
    assert value("nightlake_daemon_backlog") == 42


def test_inotify_sees_a_trigger_made_in_a_directory_created_after_the_watch_began(tmp_path):
    watcher = triggers.Watcher(tmp_path)
    try:
        (tmp_path / "obs1" / "deep").mkdir(parents=True)
        (tmp_path / "obs1" / "deep" / "a.fits").write_bytes(b"x")
        (tmp_path / "obs1" / "deep" / "a.fits.trigger").symlink_to("a.fits")
        (tmp_path / "invalid").mkdir()
        (tmp_path / "invalid" / "b.fits.trigger").touch()  # never watched
        seen: list = []
        for _ in range(20):
            seen += watcher.ready(0.1)
        assert seen == [tmp_path / "obs1" / "deep" / "a.fits.trigger"]
    finally:
        watcher.close()
