"""Bad input against the real lake: what Rucio would refuse late is refused up front, in one line,
before the run directory exists; what a directory source leaves out is said."""

from __future__ import annotations

import os

import pytest

from ingest_helpers import nightlake, summary, write_spec

pytestmark = pytest.mark.lake


def test_an_ingest_into_a_scope_that_does_not_exist_exits_2_saying_how_to_add_it(lake, scratch):
    files = scratch / "night"
    files.mkdir()
    (files / "NOSCOPE_0.dat").write_bytes(b"x" * 100)
    result = nightlake("ingest", str(files), "--scope", "noscope", "--rse", "ONSITE", "--run", str(scratch / "run"),
                       "--quiet")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "scope 'noscope' does not exist" in line and "rucio scope add noscope --account" in line
    assert not (scratch / "run").exists()


def test_the_corrected_command_after_a_refused_rule_is_a_new_run(lake, scratch):
    spec = write_spec(scratch / "night.toml", "FIXEDRULE", datasets=1, files=2)
    refused = nightlake("ingest", str(spec), "--rse", "ONSITE", "--rule", "NOWHERE", "--run", str(scratch / "run"),
                        "--quiet")
    assert refused.returncode == 2 and "NOWHERE" in refused.stderr and not (scratch / "run").exists()
    corrected = nightlake("ingest", str(spec), "--rse", "ONSITE", "--rule", "OFFSITE-A", "--run",
                          str(scratch / "run"), "--quiet")
    assert corrected.returncode == 0, corrected.stderr
    assert summary(scratch / "run")["files"]["done"] == 2


def test_a_directory_with_a_fifo_and_a_link_out_is_ingested_without_them_and_says_so(lake, scratch):
    files = scratch / "night" / "skipds"
    files.mkdir(parents=True)
    (files / "SKIP_0.dat").write_bytes(b"x" * 100)
    os.mkfifo(files / "SKIP_pipe.dat")
    (scratch / "outside.dat").write_bytes(b"y" * 10)
    (files / "SKIP_link.dat").symlink_to(scratch / "outside.dat")
    result = nightlake("ingest", str(scratch / "night"), "--scope", "cta", "--rse", "ONSITE", "--run",
                       str(scratch / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("nightlake: warning: skipped 1 ")]
    assert len(warnings) == 2
    done = summary(scratch / "run")
    assert done["files"]["done"] == 1 and sorted(s["files"] for s in done["skipped"]) == [1, 1]
