"""Helpers shared by the ingest tests: small night specs, the stock rucio CLI and the acceptance
checks made with it, storage walks."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Expected:
    """A file the lake must hold: its DID name, dataset, metadata, and the bytes it must have."""

    name: str
    dataset: str
    meta: dict
    content: Callable[[], bytes]


def on_disk(plan, root: Path) -> list[Expected]:
    """The plan's files as `generate` wrote them under `root`: their bytes are the local files'."""
    from nightlake.flows.generate import file_path

    return [Expected(f.name, f.dataset, f.meta, file_path(root, f).read_bytes) for f in plan.files()]


def streamed(plan) -> list[Expected]:
    """The plan's files as streamed payloads: their bytes exist nowhere but in the stream."""
    from nightlake.night.payload import open_stream

    return [Expected(f.name, f.dataset, f.meta, lambda f=f: b"".join(open_stream(f).iter_chunks()))
            for f in plan.files()]


def listed_by_cli(dataset: str, rse: str) -> dict[str, tuple[int, str]]:
    """{name: (bytes, adler32)} of a dataset's files with an AVAILABLE replica on `rse` (the only
    state `rucio replica list file` shows by default). Its FILESIZE column is human-readable
    ("302.400 kB"), and rucio-clients 41.5.1 ignores the global `-R/--robot` here; the command's
    own hidden `--human false` prints exact bytes."""
    out = rucio("replica", "list", "file", "--human", "false", "--rses", rse, f"cta:{dataset}")
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[1:4])
            for line in out.splitlines() if line.startswith("| cta ")}
    listed = {name: (int(size), checksum) for name, size, checksum in rows}
    assert len(listed) == len(rows), f"a file listed with two sizes or checksums:\n{out}"
    return listed


def dids(filter_: str, pattern: str = "cta:*") -> set[str]:
    """Names of the DIDs the stock `rucio did list --filter` returns."""
    out = rucio("did", "list", pattern, "--short", "--filter", filter_)
    return {line.split(":", 1)[1] for line in out.split() if line.startswith("cta:")}


def assert_cli_lists(files: list[Expected], rse: str) -> None:
    """The stock CLI lists each dataset's files, all of them and no other, with their sizes and adler32s."""
    for dataset in sorted({f.dataset for f in files}):
        expected = {f.name: (len(data := f.content()), adler32(data)) for f in files if f.dataset == dataset}
        assert listed_by_cli(dataset, rse) == expected, dataset


def assert_cli_downloads(files: list[Expected], into: Path) -> None:
    """`rucio download` of the files (which checks adler32 itself) gives exactly their bytes."""
    rucio("download", "--dir", str(into), *(f"cta:{f.name}" for f in files))
    for f in files:
        assert (into / "cta" / f.name).read_bytes() == f.content(), f.name


def assert_cli_filter(files: list[Expected], key: str, value: str) -> None:
    """`rucio did list --filter KEY=VALUE` returns exactly the files with that metadata value;
    `site` (also a FITS key) is ANDed in so that other nights in the lake do not count."""
    expected = {f.name for f in files if f.meta[key] == value}
    assert 0 < len(expected) < len(files), "a filter that selects all or nothing proves nothing"
    assert dids(f"{key}={value},site={files[0].meta['site']}") == expected


def sample(files: list[Expected], count: int = 4) -> list[Expected]:
    """`count` files spread over the night (every dataset, first and later files)."""
    return files[::max(1, len(files) // count)][:count]


def stored_files(lake, rse) -> set[str]:
    """Relative paths of every object on an RSE's storage, temporaries included."""
    root = lake.rse_data(rse) / "rucio"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def journal_counts(journal: Path) -> dict[str, int]:
    """Files per state of a running run's journal, read from outside (empty while it is being made)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


def kill_when(args: list[str], journal: Path, condition, timeout: float = 120) -> dict[str, int]:
    """Start `nightlake ARGS`, SIGKILL it (by its PID) as soon as `condition(journal counts)` holds;
    the counts it was killed at."""
    import signal
    import time

    import pytest

    proc = subprocess.Popen([NIGHTLAKE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            counts = journal_counts(journal)
            if condition(counts):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return counts
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pytest.fail(f"nightlake {args[0]} ended before the kill point (exit {proc.returncode})")


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
