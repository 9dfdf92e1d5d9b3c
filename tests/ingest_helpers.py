"""Helpers shared by the ingest tests: small night specs, the stock rucio CLI, storage walks."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from pathlib import Path

from conftest import NIGHTLAKE


def write_spec(path: Path, site: str, datasets: int, files: int, size: str = "5 kB",
               rules: str = "", telescopes: str = '["LST-1", "LST-2"]') -> Path:
    """A small night; `site` keeps DID names unique across tests that share one lake."""
    path.write_text(f"""
[night]
site = "{site}"
date = 2026-03-14
scope = "cta"
seed = 7
telescopes = {telescopes}

[datasets]
count = {datasets}
files = {files}

[sizes]
kind = "fixed"
size = "{size}"
{rules}
""")
    return path


def nightlake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NIGHTLAKE, *args], capture_output=True, text=True)


def rucio(*args: str) -> str:
    """The stock `rucio` CLI (same venv as nightlake), against the test lake."""
    rucio_bin = str(Path(NIGHTLAKE).parent / "rucio")
    result = subprocess.run([rucio_bin, *args], capture_output=True, text=True, env=os.environ)
    assert result.returncode == 0, result.stderr
    return result.stdout


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def stored_files(lake, rse) -> set[str]:
    """Relative paths of every object on an RSE's storage, temporaries included."""
    root = lake.rse_data(rse) / "rucio"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def place_on_storage(lake, rse, pfn: str, source: Path) -> Path:
    """Copy a file onto an RSE's storage at a PFN, as XRootD itself would have written it: the
    directories and the file belong to the server's user, so later uploads into them still work."""
    import shutil

    from nightlake.lake import xrootd

    root = lake.rse_data(rse) / "rucio"
    target = root / pfn.split("/rucio/", 1)[1]
    missing = [d for d in [target.parent, *target.parent.parents] if d.is_relative_to(root) and not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    if user := xrootd.run_as():
        for path in [target, *missing]:
            shutil.chown(path, user, user)
    return target
