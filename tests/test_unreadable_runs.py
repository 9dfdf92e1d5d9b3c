"""`status` and `report` on a run directory whose journal or event log is not what nightlake
wrote: one line naming the file (exit 2), never a traceback; files in states this nightlake does
not know are shown, not dropped."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import NIGHTLAKE
from nightlake import BadInput
from nightlake.cli import cli
from nightlake.observe.report.collect import collect
from nightlake.runs.journal.ingest import IngestJournal

FILES = 3000


def _journal(run: Path) -> Path:
    """A real ingest journal of FILES planned files, checkpointed so the file holds every page."""
    run.mkdir(exist_ok=True)
    path = run / "journal.sqlite"
    with IngestJournal.create(path, {"description": {"command": "ingest", "source": "/night", "rse": "ONSITE"}}) as j:
        j.add_files({"scope": "cta", "name": f"file-{i:06d}.fits", "dataset": "ds", "source": f"/night/{i}",
                     "bytes": 1000, "adler32": None, "meta": {"telescope": "LST-1" * 20}} for i in range(FILES))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _garbled(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE observations (id INTEGER PRIMARY KEY, target TEXT)")


def _foreign_with_a_meta_table(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")


DAMAGES = [_truncated, _zero_bytes, _garbled, _foreign, _foreign_with_a_meta_table]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_status_of_a_damaged_or_foreign_journal_is_one_line_naming_it(tmp_path, damage):
    path = _journal(tmp_path / "run")
    damage(path)
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "run")])
    assert isinstance(result.exception, BadInput), result.output
    assert str(result.exception).startswith(f"{path}: not a journal this nightlake can read")


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_report_of_a_damaged_or_foreign_journal_is_one_line_naming_it(tmp_path, damage):
    path = _journal(tmp_path / "run")
    damage(path)
    with pytest.raises(BadInput, match=f"^{path}: not a journal this nightlake can read"):
        collect(tmp_path / "run")


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_resuming_a_run_whose_journal_is_damaged_is_one_line_naming_it(tmp_path, damage):
    """The resume path (ingest, retrieve) checks the whole journal before it does anything."""
    from nightlake.runs.rundir import INGEST, RunDir

    description = {"command": "ingest", "source": "/night", "rse": "ONSITE"}
    path = _journal(tmp_path / "run")
    (tmp_path / "run" / "run.json").write_text(json.dumps(description))
    damage(path)
    with pytest.raises(BadInput, match=f"^{path}: not a journal this nightlake can read"):
        RunDir(tmp_path / "run").open(INGEST, description)


def test_status_of_a_garbled_journal_exits_2_with_one_line(tmp_path):
    path = _journal(tmp_path / "run")
    _garbled(path)
    proc = subprocess.run([NIGHTLAKE, "status", str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert str(path) in line and "not a journal" in line


def test_report_of_an_event_log_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    _journal(tmp_path / "run")
    events = tmp_path / "run" / "events.jsonl"
    events.write_bytes(b'{"ts": 1, "kind": "run_start"}\n\xff\xfe garbage \x80\n')
    with pytest.raises(BadInput, match=f"^{events}: not a nightlake event log"):
        collect(tmp_path / "run")


def _with_a_newer_state(run: Path) -> None:
    with sqlite3.connect(_journal(run)) as db:
        db.execute("UPDATE files SET state = 'archived' WHERE id <= 10")


def test_status_shows_files_in_a_state_it_does_not_know(tmp_path):
    _with_a_newer_state(tmp_path / "run")
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    status = __import__("json").loads(result.output)
    assert (status["files"]["archived"], status["files"]["total"]) == (10, FILES)
    assert status["unknown_states"] == ["archived"]


def test_status_table_lists_the_unknown_state(tmp_path):
    _with_a_newer_state(tmp_path / "run")
    result = CliRunner().invoke(cli, ["status", str(tmp_path / "run")])
    assert "archived" in result.output and "does not know" in result.output


def test_report_counts_files_in_a_state_it_does_not_know(tmp_path):
    _with_a_newer_state(tmp_path / "run")
    data = collect(tmp_path / "run")
    assert (data["files"]["archived"], data["files"]["total"], data["bytes"]["archived"]) == (10, FILES, 10_000)
    assert "10 archived" in data["headline"]
