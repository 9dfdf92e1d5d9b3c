"""An ingest or a retrieve checks what the catalog can refuse (the scope, RSE expressions, the
RSE) before its run directory exists, and a source that turns out bad leaves no run behind: a
corrected command is then a new run, never refused as "another run"."""

from __future__ import annotations

from pathlib import Path

import pytest
from rucio.common import exception as rucio_exc

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.retry import RetryPolicy
from nightlake.catalog.rules import RulePolicy
from nightlake.flows.ingest import run as ingest
from nightlake.flows.ingest.context import IngestOptions
from nightlake.observe.events import EventBus


class FakeClient:
    """A Rucio client that knows the scope "cta" and the RSE expression "ONSITE"."""

    account = "root"

    def list_scopes(self):
        return ["cta", "user.root"]

    def list_rses(self, expression):
        if expression != "ONSITE":
            raise rucio_exc.InvalidRSEExpression(expression)
        return iter([{"rse": "ONSITE"}])


@pytest.fixture
def catalog(monkeypatch) -> Catalog:
    catalog = Catalog(RetryPolicy(max_attempts=1, target="catalog", catalog=True, sleep=lambda s: None),
                      client=FakeClient())
    monkeypatch.setattr(ingest, "open_catalog", lambda bus, patience=None: catalog)
    return catalog


@pytest.fixture
def night(tmp_path) -> Path:
    (tmp_path / "night").mkdir()
    (tmp_path / "night" / "a.fits").write_bytes(b"x" * 100)
    return tmp_path / "night"


def request(night: Path, run: Path, scope: str = "cta", rse: str = "ONSITE", rules=()) -> ingest.IngestRequest:
    return ingest.IngestRequest(source=night, run=run, options=IngestOptions(rse=rse), scope=scope,
                                rules=tuple(RulePolicy(r) for r in rules))


def test_a_scope_that_does_not_exist_is_bad_input_saying_how_to_create_it(catalog):
    with pytest.raises(BadInput) as exc:
        catalog.check_scopes(["nope"])
    message = str(exc.value)
    assert "scope 'nope' does not exist" in message
    assert "`rucio scope add nope --account root`" in message and "rucio-admin scope add" in message


def test_existing_scopes_pass(catalog):
    catalog.check_scopes(["cta", "user.root", None])


def test_an_ingest_into_a_missing_scope_makes_no_run_directory(catalog, night, tmp_path):
    with pytest.raises(BadInput, match="scope 'nope' does not exist"):
        ingest.run_ingest(request(night, tmp_path / "run", scope="nope"), EventBus())
    assert not (tmp_path / "run").exists()


def test_an_ingest_with_a_bad_rule_expression_makes_no_run_directory(catalog, night, tmp_path):
    with pytest.raises(BadInput, match="invalid RSE expression 'OFFSITE-Z'"):
        ingest.run_ingest(request(night, tmp_path / "run", rules=["OFFSITE-Z"]), EventBus())
    assert not (tmp_path / "run").exists()


def test_an_ingest_to_an_unknown_rse_makes_no_run_directory(catalog, night, tmp_path, monkeypatch):
    def unknown(rse):  # what RseCalls.rse_info makes of Rucio's RSENotFound
        raise BadInput(f"RSE {rse!r} is not known to the Rucio server")

    monkeypatch.setattr(catalog, "rse_info", unknown)
    with pytest.raises(BadInput, match="RSE 'NOWHERE' is not known"):
        ingest.run_ingest(request(night, tmp_path / "run", rse="NOWHERE"), EventBus())
    assert not (tmp_path / "run").exists()


def test_a_source_refused_while_journaled_leaves_no_run_behind(catalog, night, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "rse_info", lambda rse: {"rse": rse, "protocols": [
        {"scheme": "file", "domains": {"wan": {"write": 1}}}]})
    (night / "bad name.fits").write_bytes(b"x")
    with pytest.raises(BadInput, match="bad name.fits"):
        ingest.run_ingest(request(night, tmp_path / "run"), EventBus())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, refusal", [({"scope": "nope", "filters": (("a", "b"),)}, "scope 'nope'"),
                                              ({"rse": "OFFSITE-Z"}, "'OFFSITE-Z'"),
                                              ({"from_rse": "OFFSITE-Z"}, "'OFFSITE-Z'")])
def test_a_retrieve_the_catalog_refuses_makes_no_run_directory(monkeypatch, tmp_path, options, refusal):
    from nightlake.flows.retrieve import run as retrieve

    catalog = Catalog(RetryPolicy(max_attempts=1, target="catalog", catalog=True, sleep=lambda s: None),
                      client=FakeClient())
    monkeypatch.setattr(retrieve, "open_catalog", lambda bus, patience=None: catalog)
    dids = () if "filters" in options else ("cta:f.fits",)
    with pytest.raises(BadInput, match=refusal):
        retrieve.run_retrieve(retrieve.RetrieveRequest(out=tmp_path / "out", run=tmp_path / "run", dids=dids,
                                                       **options), EventBus())
    assert not (tmp_path / "run").exists()
