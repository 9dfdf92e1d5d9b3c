"""The CTAO-policy lake's own parts, without a lake: its front end merges slashes as Apache does,
its server venv is its own, and a lake keeps the policy it was made with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nightlake import BadInput
from nightlake.lake import rucio_server
from nightlake.lake.layout import Layout, default_server_venv

GATEWAY = Path(rucio_server.__file__).with_name("rucio_gateway.py")


def test_the_front_end_hands_rucio_the_path_apache_would():
    """The gateway runs in the server's venv and imports only the standard library at load."""
    seen = []
    spec = importlib.util.spec_from_file_location("rucio_gateway", GATEWAY)
    gateway = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gateway)
    app = gateway._merging_slashes(lambda environ, start_response: seen.append(environ["PATH_INFO"]) or [b""])
    # `/dids/acada/%2Fctao%2Facada%2FDL0` as gunicorn decodes it
    app({"PATH_INFO": "/dids/acada//ctao/acada/DL0"}, None)
    assert seen == ["/dids/acada/ctao/acada/DL0"]


def test_the_ctao_lake_has_a_server_venv_of_its_own(tmp_path, monkeypatch):
    monkeypatch.delenv("NIGHTLAKE_SERVER_VENV", raising=False)
    monkeypatch.delenv("NIGHTLAKE_SERVER_VENV_CTAO", raising=False)
    assert default_server_venv("ctao").name == default_server_venv().name + "-ctao"
    layout = Layout.load_or_new(tmp_path / "lake", 34900, policy="ctao")
    assert rucio_server.requirements(layout)[-1].startswith("ctao-bdms-rucio-policy==")
    assert "package = bdms_rucio_policy" in rucio_server.POLICY["ctao"]


def test_a_lake_keeps_the_policy_it_was_made_with(tmp_path):
    Layout.load_or_new(tmp_path / "lake", 34900).save()
    with pytest.raises(BadInput, match="runs Rucio's generic policy, not ctao"):
        Layout.load_or_new(tmp_path / "lake", policy="ctao")
    assert Layout.load_or_new(tmp_path / "lake").policy == "generic"
