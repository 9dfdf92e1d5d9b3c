"""A Rucio server that does not answer stops a command with one line that names it and says what
to do, exit code 1 (re-running resumes), and no traceback or client log on the terminal."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from conftest import NIGHTLAKE, free_port
from ingest_helpers import write_spec

pytestmark = pytest.mark.lake


@pytest.fixture
def unreachable_config(lake, scratch):
    """The test lake's client configuration, pointed at a loopback port where nothing listens."""
    port = free_port()
    config = re.sub(r"https://127\.0\.0\.1:\d+", f"https://127.0.0.1:{port}", lake.client_cfg.read_text())
    config = re.sub(r"(?m)^auth_token_file_path = .*$", f"auth_token_file_path = {scratch}/token", config)
    (scratch / "rucio.cfg").write_text(config)
    return scratch / "rucio.cfg", port


@pytest.mark.parametrize("command", ["ingest", "retrieve"])
def test_an_unreachable_catalog_stops_with_one_line_and_exit_1(unreachable_config, scratch, command):
    config, port = unreachable_config
    spec = write_spec(scratch / "night.toml", "UNREACHABLE", datasets=1, files=2)
    args = {"ingest": ["ingest", str(spec), "--rse", "ONSITE", "--run", str(scratch / "run")],
            "retrieve": ["retrieve", "cta:UNREACHABLE_file", "--out", str(scratch / "dl"), "--run", str(scratch / "r")]}
    result = subprocess.run([NIGHTLAKE, *args[command]], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "RUCIO_CONFIG": str(config)})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nightlake: stopped: catalog")
    assert f"127.0.0.1:{port}" in lines[0] and "Re-run the same command to resume" in lines[0]
