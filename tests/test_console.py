"""Tables printed into a pipe or a log file come out whole: rich would assume 80 columns there."""

from __future__ import annotations

import io
import os

from conftest import nightlake
from ingest_helpers import write_spec
from nightlake.cli import console

EXPRESSION = "|".join(f"(site=SITE-{i}&tier=2&type=DISK)" for i in range(4))  # 131 characters


def test_a_pipe_gets_a_wide_page_and_columns_still_rule(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert console._width(io.StringIO()) == console.WIDE
    monkeypatch.setenv("COLUMNS", "100")
    assert console._width(io.StringIO()) is None  # rich takes COLUMNS itself


def test_a_long_rule_expression_is_printed_whole_into_a_pipe(tmp_path):
    spec = write_spec(tmp_path / "night.toml", "WIDE", datasets=1, files=2,
                      rules=f'[[rules]]\ncopies = 1\nrse_expression = "{EXPRESSION}"\n')
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = nightlake("plan", str(spec), check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert any(EXPRESSION in line for line in result.stdout.splitlines()), result.stdout
