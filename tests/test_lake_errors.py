"""Error paths of the lake that a person must be able to act on."""

from __future__ import annotations

import pytest

from conftest import TEST_PORT_BASE
from nightlake import BadInput
from nightlake.lake import postgres, system
from nightlake.lake.layout import Layout


def test_missing_system_package_names_the_install_command():
    with pytest.raises(BadInput) as err:
        system.check_packages({"/nonexistent/bin/xrootd": "xrootd-server", "sh": "dash"})
    assert str(err.value).endswith("apt-get install -y --no-install-recommends xrootd-server")


def test_postgres_refusing_to_start_reports_the_log_line(scratch):
    layout = Layout(scratch / "lake", TEST_PORT_BASE + 300, scratch / "unused-venv")
    postgres.initdb(layout)
    with open(layout.pgdata / "postgresql.conf", "a") as conf:
        conf.write("shared_buffers = 'lots'\n")
    with pytest.raises(BadInput) as err:
        postgres.start(layout)
    assert "PostgreSQL exited at start" in str(err.value)
    assert "shared_buffers" in str(err.value)
