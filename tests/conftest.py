"""Shared fixtures. The integration tests share ONE local lake per test session, in its own
directory and on its own ports, so it never clashes with a demo lake that is up."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NIGHTLAKE = str(Path(sys.executable).parent / "nightlake")
TEST_LAKE_DIR = Path(os.environ.get("NIGHTLAKE_TEST_LAKE_DIR", REPO / ".nightlake" / "test-lake"))
TEST_PORT_BASE = int(os.environ.get("NIGHTLAKE_TEST_PORT_BASE", "29100"))


def pytest_configure(config):
    """Point every Rucio client in this process at the test lake. rucio-clients reads its
    configuration when `rucio.client` is first imported, so nightlake and these tests import it
    only where it is used, after the `lake` fixture has started the lake."""
    os.environ["RUCIO_CONFIG"] = str(TEST_LAKE_DIR / "etc" / "rucio.cfg")
    os.environ["X509_USER_PROXY"] = str(TEST_LAKE_DIR / "certs" / "x509up")
    os.environ["X509_CERT_DIR"] = str(TEST_LAKE_DIR / "certs" / "cadir")
    os.environ.pop("NIGHTLAKE_LAKE_DIR", None)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium as this closed network needs it (no background connections), with the
    page's console logged on stderr."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


PAGE_ERRORS = ("CONSOLE", "Failed to load resource", "Not allowed to load")  # in Chromium's stderr


def open_in_chromium(page: Path, work: Path, height: int) -> tuple[list[str], int, str]:
    """`page` rendered by headless Chromium (a 1280 x `height` screenshot), then its DOM dumped:
    the page's errors (console messages, resources it could not load), the screenshot's size in
    bytes (a blank page is small), and the DOM."""
    shot, url = work / "shot.png", page.as_uri()
    result = chromium(work / "profile", f"--window-size=1280,{height}", f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if any(mark in line for mark in PAGE_ERRORS)]
    return errors, shot.stat().st_size, chromium(work / "profile", "--dump-dom", url).stdout


def free_port() -> int:
    """A loopback port nothing listens on (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """A Prometheus scrape of 127.0.0.1:port: {(sample name, sorted labels): value}."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def nightlake(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `nightlake` command, as a user would."""
    result = subprocess.run([NIGHTLAKE, *args], capture_output=True, text=True, env=env)
    if check and result.returncode:
        raise AssertionError(f"nightlake {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def lake():
    """The test lake: purged and started once per session, taken down at the end. A lock keeps two
    concurrent test sessions from fighting over it (the second waits)."""
    import fcntl

    from nightlake.lake.layout import Layout

    TEST_LAKE_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(TEST_LAKE_DIR.parent / "test-lake.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = ["--dir", str(TEST_LAKE_DIR)]
        nightlake("lake", "down", "--purge", *base)
        nightlake("lake", "up", *base, "--port-base", str(TEST_PORT_BASE))
        yield Layout.load_or_new(TEST_LAKE_DIR)
        if not os.environ.get("NIGHTLAKE_TEST_KEEP_LAKE"):
            nightlake("lake", "down", "--purge", *base, check=False)


@pytest.fixture
def scratch():
    """A scratch directory that the lake's unprivileged users (postgres, xrootd) can reach,
    unlike pytest's tmp_path (mode 0700 under /tmp)."""
    import shutil
    import tempfile

    root = REPO / ".nightlake" / "scratch"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=root))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
