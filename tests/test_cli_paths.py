"""A --run or --out under a regular file is one line before anything is written, for every
command that creates a directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import NIGHTLAKE
from nightlake import BadInput
from nightlake.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "examples" / "demo.toml")


def _commands(tmp_path: Path, under_file: str) -> dict[str, list[str]]:
    night, run = tmp_path / "night", tmp_path / "run"
    night.mkdir(exist_ok=True)
    return {"ingest --run": ["ingest", str(night), "--scope", "cta", "--rse", "ONSITE", "--run", under_file],
            "retrieve --run": ["retrieve", "cta:x", "--out", str(tmp_path / "dl"), "--run", under_file],
            "retrieve --out": ["retrieve", "cta:x", "--out", under_file, "--run", str(run)],
            "generate --out": ["generate", DEMO, "--out", under_file],
            "report --out": ["report", str(run), "--out", under_file]}


@pytest.mark.parametrize("command", ["ingest --run", "retrieve --run", "retrieve --out", "generate --out",
                                     "report --out"])
def test_a_directory_option_under_a_regular_file_is_bad_input(tmp_path, command):
    (tmp_path / "somefile").write_text("not a directory")
    under_file = str(tmp_path / "somefile" / "run")
    result = CliRunner().invoke(cli, _commands(tmp_path, under_file)[command])
    assert isinstance(result.exception, BadInput), result.output
    assert f"{tmp_path / 'somefile'} is not a directory" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["night", "somefile"]


def test_a_directory_option_under_a_file_exits_2_with_one_line(tmp_path):
    (tmp_path / "somefile").write_text("")
    proc = subprocess.run([NIGHTLAKE, "generate", DEMO, "--out", str(tmp_path / "somefile" / "a" / "b")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--out" in line and "is not a directory" in line
