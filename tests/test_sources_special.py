"""A directory source's special entries: FIFOs, sockets and links are never opened or followed
out of the tree unless asked, and what is skipped is counted, with sample paths, and said."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.run import IngestRequest, _journal_plan
from nightlake.night.sources import LINK_OUT, LINK_TO_DIRECTORY, SPECIAL, Skipped, from_directory
from nightlake.observe.events import EventBus, Kind
from nightlake.runs.journal.ingest import IngestJournal
from nightlake.runs.summary import ingest_summary


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


@pytest.fixture
def night(tmp_path) -> Path:
    root = tmp_path / "night"
    touch(root / "a.fits")
    return root


def walked(root: Path, follow_links: bool = False) -> tuple[list[str], dict[str, dict]]:
    skipped = Skipped()
    names = [r.name for r in from_directory(root, "cta", follow_links=follow_links, skipped=skipped)]
    return names, {entry["reason"]: entry for entry in skipped.as_list()}


def test_a_fifo_in_a_directory_source_is_skipped_and_counted_not_opened(night):
    os.mkfifo(night / "pipe.fits")
    names, skipped = walked(night)
    assert names == ["a.fits"]
    assert skipped[SPECIAL] == {"reason": SPECIAL, "files": 1, "sample": [str(night / "pipe.fits")]}


def test_a_socket_in_a_directory_source_is_skipped_and_counted(night):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(night / "daq.sock"))
        names, skipped = walked(night)
    assert names == ["a.fits"] and skipped[SPECIAL]["files"] == 1


def test_a_link_to_a_fifo_is_skipped_not_opened(night, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (night / "p.fits").symlink_to(tmp_path / "pipe")
    names, skipped = walked(night, follow_links=True)
    assert names == ["a.fits"] and skipped[SPECIAL]["files"] == 1


def test_a_link_out_of_the_source_tree_is_skipped_by_default(night, tmp_path):
    (night / "etc.fits").symlink_to(touch(tmp_path / "elsewhere" / "secret.fits"))
    names, skipped = walked(night)
    assert names == ["a.fits"]
    assert skipped[LINK_OUT]["sample"] == [str(night / "etc.fits")]


def test_follow_links_ingests_a_file_linked_from_out_of_the_tree(night, tmp_path):
    (night / "b.fits").symlink_to(touch(tmp_path / "elsewhere" / "b0.fits"))
    names, skipped = walked(night, follow_links=True)
    assert names == ["a.fits", "b.fits"] and skipped == {}


def test_a_link_to_a_file_inside_the_tree_is_ingested(night):
    (night / "z.fits").symlink_to(touch(night / "sub" / "target.fits"))
    names, skipped = walked(night)
    assert sorted(names) == ["a.fits", "target.fits", "z.fits"] and skipped == {}


def test_a_link_to_a_directory_is_not_followed_and_said_so(night, tmp_path):
    touch(tmp_path / "other" / "c.fits")
    (night / "other").symlink_to(tmp_path / "other")
    names, skipped = walked(night, follow_links=True)
    assert names == ["a.fits"] and skipped[LINK_TO_DIRECTORY]["files"] == 1


def test_the_sample_keeps_a_few_paths_and_the_count_all(night, tmp_path):
    for i in range(10):
        (night / f"l{i}.fits").symlink_to(touch(tmp_path / "out" / f"{i}.fits"))
    _, skipped = walked(night)
    assert skipped[LINK_OUT]["files"] == 10 and len(skipped[LINK_OUT]["sample"]) == Skipped.SAMPLES


def test_an_ingest_plan_emits_and_keeps_what_the_source_skipped(night, tmp_path):
    os.mkfifo(night / "pipe.fits")
    events = []
    bus = EventBus()
    bus.subscribe(events.append)
    request = IngestRequest(source=night, run=tmp_path / "run", options=IngestOptions(rse="ONSITE"), scope="cta")
    with IngestJournal.create(tmp_path / "journal.sqlite") as journal:
        _journal_plan(journal, request, bus)
        summary = ingest_summary(journal)
    (event,) = [e for e in events if e.kind is Kind.SOURCE_SKIPPED]
    assert (event.fields["reason"], event.fields["files"]) == (SPECIAL, 1)
    assert summary["skipped"] == [{"reason": SPECIAL, "files": 1, "sample": [str(night / "pipe.fits")]}]


def test_ingest_warns_in_one_line_with_the_count_and_a_sample(capsys):
    from nightlake.cli.ingest import _warn_skipped
    from nightlake.observe.events import Event

    _warn_skipped(Event(Kind.SOURCE_SKIPPED, {"reason": LINK_OUT, "files": 12, "sample": ["/n/a", "/n/b"]}))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"nightlake: warning: skipped 12 {LINK_OUT}, e.g. /n/a, /n/b"


def test_status_says_what_the_source_skipped(night, tmp_path):
    from click.testing import CliRunner

    from nightlake.cli import cli

    os.mkfifo(night / "pipe.fits")
    request = IngestRequest(source=night, run=tmp_path / "run", options=IngestOptions(rse="ONSITE"), scope="cta")
    (tmp_path / "run").mkdir()
    with IngestJournal.create(tmp_path / "run" / "journal.sqlite", {"description": request.description()}) as journal:
        _journal_plan(journal, request, EventBus())
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "run")])
    assert f"skipped in the source: 1 {SPECIAL}" in result.output
