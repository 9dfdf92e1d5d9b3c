"""Without a Rucio client configuration, a command says how to get one, in one line, exit 2."""

from __future__ import annotations

import os
import subprocess

from conftest import NIGHTLAKE
from ingest_helpers import write_spec


def test_a_missing_rucio_configuration_is_bad_input_with_the_fix(tmp_path):
    spec = write_spec(tmp_path / "night.toml", "NOCONFIG", datasets=1, files=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "VIRTUAL_ENV"))}
    env["RUCIO_CONFIG"] = str(tmp_path / "missing" / "rucio.cfg")
    result = subprocess.run([NIGHTLAKE, "ingest", str(spec), "--rse", "ONSITE", "--run", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "no usable Rucio client configuration at RUCIO_CONFIG=" in line and "nightlake lake env" in line
