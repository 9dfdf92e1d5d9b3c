"""Against a lake running CTAO's Rucio policy package (`lake up --policy ctao`, a lake of its own):
a spec night and an in-place directory ingested with CTAO's names, checked with the stock `rucio`
CLI (the container tree, files filtered by metadata) and retrieved by DID and by filter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import NIGHTLAKE, REPO, TEST_PORT_BASE, nightlake
from nightlake.night.fits import ctaometa

pytestmark = pytest.mark.lake

LAKE = REPO / ".nightlake" / "test-ctao-lake"
PORT_BASE = TEST_PORT_BASE + 400  # the shared test lake is at the base, the lifecycle and error tests at +200, +300
DAY = "/ctao/acada/DL0/CTAO-North/events/2026/03/14"


@pytest.fixture(scope="module")
def ctao():
    """The CTAO-policy lake, its stock-client environment; purged before and after."""
    nightlake("lake", "down", "--purge", "--dir", str(LAKE), check=False)
    nightlake("lake", "up", "--policy", "ctao", "--dir", str(LAKE), "--port-base", str(PORT_BASE))
    lines = nightlake("lake", "env", "--dir", str(LAKE)).stdout.splitlines()
    env = {**os.environ, **dict(line.removeprefix("export ").split("=", 1) for line in lines)}
    yield env
    if not os.environ.get("NIGHTLAKE_TEST_KEEP_LAKE"):
        nightlake("lake", "down", "--purge", "--dir", str(LAKE), check=False)


def run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return nightlake(*args, env=env, check=check)


def rucio(env: dict, *args: str) -> str:
    result = subprocess.run([str(Path(NIGHTLAKE).parent / "rucio"), *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def content(env: dict, did: str) -> set[str]:
    """The DIDs directly in a collection, as the stock CLI lists them."""
    out = rucio(env, "did", "content", "list", "--short", did)
    return {line.strip() for line in out.splitlines() if ":" in line}


def night_spec(path: Path, site: str, extra: str = "") -> Path:
    path.write_text(f"""
[night]
site = "{site}"
date = 2026-03-14
scope = "acada"
seed = 3
telescopes = ["LSTN-01", "LSTN-02"]
[datasets]
count = 2
files = 4
[sizes]
kind = "fixed"
size = "8 kB"
[naming]
vo = "ctao"
{extra}
""")
    return path


def events(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def test_a_spec_night_gets_ctao_names_and_its_container_tree(ctao, scratch):
    spec = night_spec(scratch / "night.toml", "CTAO-North")
    first = run(ctao, "ingest", str(spec), "--rse", "ONSITE", "--run", str(scratch / "r1"), "--quiet", "--json")
    assert json.loads(first.stdout)["files"]["done"] == 8
    # a container per directory level, each in the scope the policy gives it, each created once
    assert content(ctao, "/ctao") == {"acada:/ctao/acada"}
    assert content(ctao, "/ctao/acada") == {"acada:/ctao/acada/DL0"}
    assert content(ctao, "/ctao/acada/DL0/CTAO-North/events/2026/03") == {f"acada:{DAY}"}
    datasets = {f"acada:{DAY}/obs000001_run000001", f"acada:{DAY}/obs000002_run000002"}
    assert content(ctao, DAY) == datasets
    [created] = events(scratch / "r1", "containers.created")
    assert created["containers"] == 8 and created["existing"] == 0  # /ctao ... /14: 8 levels, one call
    files = content(ctao, f"{DAY}/obs000001_run000001")
    assert len(files) == 4 and all(f.startswith(f"acada:{DAY}/obs000001_run000001/CTAO-North_") for f in files)
    # metadata filters through the stock CLI; the PFN is the name on the RSE (identity lfn2pfn)
    lst2 = rucio(ctao, "did", "list", "--short", "--filter", "telescope=LSTN-02", "acada:/ctao/acada/*")
    assert len([line for line in lst2.splitlines() if "LSTN-02" in line]) == 4
    did = sorted(files)[0]
    pfn = rucio(ctao, "replica", "list", "file", "--pfns", did).split()[0]
    assert pfn.endswith(did.split(":", 1)[1]) and (LAKE / "storage" / "ONSITE" / "rucio" /
                                                    did.split(":", 1)[1].lstrip("/")).is_file()
    # the same night again in a new run: nothing new is created
    run(ctao, "ingest", str(spec), "--rse", "ONSITE", "--run", str(scratch / "r2"), "--quiet")
    [again] = events(scratch / "r2", "containers.created")
    assert again["containers"] == 0 and again["existing"] == 8


def put_on_onsite(relative: str, data: bytes) -> Path:
    """A file written straight into the on-site RSE's namespace, as the telescopes' writer would."""
    from nightlake.lake.xrootd import run_as

    path = LAKE / "storage" / "ONSITE" / "rucio" / relative.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if user := run_as():
        for p in [path, *path.relative_to(LAKE / "storage").parents]:
            shutil.chown(LAKE / "storage" / p, user, user)
    return path


def test_an_in_place_directory_is_registered_and_retrieved_by_did_and_by_filter(ctao, scratch):
    from nightlake.night.fits.layout import header_bytes, ones_sum

    expected = {}
    for tel in ("LSTN-03",):
        for i in range(3):
            payload = bytes([i + 1]) * 2880
            meta = {"origin": "CTAO", "site": "CTAO-North", "night": "2026-03-14", "telescope": tel, "tel_id": 1,
                    "obs_id": 7, "run": 7, "subrun": i, "date_obs": "2026-03-14T21:00:00",
                    "date_end": "2026-03-14T21:01:00", "data_level": "DL0"}
            data = header_bytes(meta, len(payload), ones_sum(payload)) + payload
            name = f"/ctao/acada/DL0/{tel}/CTAO-North/events/2026/03/15/{tel}_obs7_{i}.fits"
            put_on_onsite(name, data)
            expected[name] = data
    day = "/ctao/acada/DL0/LSTN-03/CTAO-North/events/2026/03/15"
    bad = bytearray(expected[f"{day}/LSTN-03_obs7_0.fits"])
    bad[2880 + 7] ^= 0x01  # one data bit: DATASUM no longer matches
    put_on_onsite(f"{day}/LSTN-03_obs7_bad.fits", bytes(bad))
    # a sub-tree of the scope's directory on the RSE: every name is its path from /ctao/acada on
    source = LAKE / "storage" / "ONSITE" / "rucio" / "ctao" / "acada" / "DL0" / "LSTN-03"
    result = run(ctao, "ingest", str(source), "--scope", "acada", "--vo", "ctao", "--rse", "ONSITE", "--in-place",
                 "--run", str(scratch / "r"), "--quiet", "--json", check=False)
    summary = json.loads(result.stdout)
    assert (summary["files"]["done"], summary["files"]["quarantined"]) == (3, 1)
    [problem] = [p for p in summary["problems"] if p["state"] == "quarantined"]
    assert problem["did"] == f"acada:{day}/LSTN-03_obs7_bad.fits" and "HDU 0: DATASUM" in problem["message"]
    assert content(ctao, "/ctao/acada/DL0/LSTN-03/CTAO-North/events/2026/03") == {f"acada:{day}"}
    assert content(ctao, day) == {f"acada:{n}" for n in expected if n.startswith(day)}
    # retrieve by DID (a dataset) and by a metadata filter
    out = scratch / "dl"
    run(ctao, "retrieve", f"acada:{day}", "--out", str(out), "--run", str(scratch / "g1"), "--quiet")
    run(ctao, "retrieve", "--scope", "acada", "--filter", "telescope=LSTN-03", "--out", str(scratch / "dl2"),
        "--run", str(scratch / "g2"), "--quiet")
    for target in (out, scratch / "dl2"):
        got = {"/" + str(p.relative_to(target / "acada")): p.read_bytes() for p in target.rglob("*.fits")}
        assert got == {n: d for n, d in expected.items() if n.startswith(day)}
    name, data = next(iter(expected.items()))
    assert f"{zlib.adler32(data) & 0xFFFFFFFF:08x}" in rucio(ctao, "replica", "list", "file", f"acada:{name}")



@pytest.mark.skipif(not ctaometa.available(), reason="ctao-datamodel is not importable here (the ctaometa extra; "
                                                     "Python >= 3.12)")
def test_ctao_reference_metadata_is_registered_and_filtered_on(ctao, scratch):
    from ctao_products import DATA_ID, EXPECTED, ctao_written, make_product

    day = "/ctao/acada/DL0/LSTS-01/CTAO-South/events/2026/03/15"
    name = f"{day}/LSTS-01_obs2000000123_0004.fits"
    put_on_onsite(name, ctao_written(make_product(), scratch / "product.fits").read_bytes())
    source = LAKE / "storage" / "ONSITE" / "rucio" / "ctao" / "acada" / "DL0" / "LSTS-01"
    result = run(ctao, "ingest", str(source), "--scope", "acada", "--vo", "ctao", "--rse", "ONSITE", "--in-place",
                 "--run", str(scratch / "r"), "--quiet", "--json")
    assert json.loads(result.stdout)["files"]["done"] == 1
    # the stock CLI finds the file by CTAO's own identifiers and shows the reference metadata
    found = rucio(ctao, "did", "list", "--short", "--filter", f"data_id={DATA_ID}", "acada:/ctao/acada/*")
    assert found.split() == [f"acada:{name}"]
    found = rucio(ctao, "did", "list", "--short", "--filter", "data_type=AirShower,site=CTAO-South",
                  f"acada:{day}/*")
    assert found.split() == [f"acada:{name}"]
    listed = rucio(ctao, "did", "metadata", "list", "--plugin", "JSON", f"acada:{name}")
    meta = dict(line.split(":", 1) for line in listed.splitlines())
    assert {key: value.strip() for key, value in meta.items()} == {key: str(value) for key, value in EXPECTED.items()}

STATE = r"""
import json, sys
from rucio.client import Client

client, (scope, top) = Client(), sys.argv[1].split(":", 1)
state, rules = {}, []

def walk(scope, name):
    did = client.get_did(scope, name)
    children = sorted(client.list_content(scope, name), key=lambda d: d["name"])
    state[name] = {"scope": scope, "type": did["type"], "open": did.get("open"),
                   "children": [f"{d['scope']}:{d['name']}" for d in children]}
    rules.extend(r["rse_expression"] + " " + r["name"] for r in client.list_did_rules(scope, name))
    for child in children:
        if child["type"] == "FILE":
            meta = client.get_metadata(child["scope"], child["name"], plugin="JSON")
            [replica] = client.list_replicas([{"scope": child["scope"], "name": child["name"]}])
            state[child["name"]] = {"scope": child["scope"], "bytes": replica["bytes"], "adler32": replica["adler32"],
                                    "rses": sorted(replica["rses"]), "meta": meta}
            rules.extend(r["rse_expression"] + " " + r["name"] for r in client.list_did_rules(child["scope"], child["name"]))
        else:
            walk(child["scope"], child["name"])

walk(scope, top)
print(json.dumps({"state": state, "rules": sorted(rules)}))
"""


def catalog_state(env: dict, top: str) -> dict:
    """Everything under `top`, read with the stock Python client: each collection's children and
    status, each file's size, adler32, replicas and metadata, every rule."""
    import sys

    out = subprocess.run([sys.executable, "-c", STATE, top], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_dirac_registration_gives_the_catalog_state_of_the_generic_path(ctao, scratch):
    rucio(ctao, "scope", "add", "--account", "root", "acada2")
    generic = night_spec(scratch / "generic.toml", "CTAO-South")
    dirac = scratch / "dirac.toml"
    dirac.write_text(generic.read_text().replace('scope = "acada"', 'scope = "acada2"'))
    run(ctao, "ingest", str(generic), "--rse", "ONSITE", "--run", str(scratch / "g"), "--quiet")
    run(ctao, "ingest", str(dirac), "--rse", "ONSITE", "--register", "dirac", "--run", str(scratch / "d"), "--quiet")
    a = catalog_state(ctao, "acada:/ctao/acada/DL0/CTAO-South")
    b = json.loads(json.dumps(catalog_state(ctao, "acada2:/ctao/acada2/DL0/CTAO-South")).replace("acada2", "acada"))
    assert len(a["state"]) == 5 + 2 + 8  # containers CTAO-South/events/2026/03/14, two datasets, eight files
    assert a["state"] == b["state"]
    # what DIRAC's registration adds by design: a rule per file on its RSE, one per new dataset to ANY=true
    assert a["rules"] == []
    assert b["rules"] == sorted([f"ANY=true {n}" for n, d in b["state"].items() if d.get("type") == "DATASET"]
                                + [f"ONSITE {n}" for n, d in b["state"].items() if "bytes" in d])
    # above the night: /ctao/acada2 in /ctao, as /ctao/acada is
    assert {"acada:/ctao/acada", "acada2:/ctao/acada2"} <= content(ctao, "/ctao")
