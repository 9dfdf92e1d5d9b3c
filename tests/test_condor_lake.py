"""`--cluster htcondor:2` against a personal HTCondor pool (`nightlake lake condor up`): two Dask
workers run as HTCondor jobs, as the pool's unprivileged job user, and ingest a night into the
lake; the stock rucio CLI then lists every file with its size and adler32.

The pool is a Debian trixie chroot with minicondor, bootstrapped once (debootstrap; about one to
three minutes) into `.nightlake/condor`. Where it cannot be (not root, no debootstrap, no Debian
mirror), the test is skipped and says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import NIGHTLAKE, REPO, TEST_PORT_BASE
from ingest_helpers import assert_cli_lists, streamed, summary, write_spec
from nightlake.lake.layout import RSES
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec

pytestmark = pytest.mark.lake
POOL = REPO / ".nightlake" / "condor"
POOL_PORT = TEST_PORT_BASE + 450  # the pool's 50 ports
SCHEDULER_PORT = TEST_PORT_BASE + 420


@pytest.fixture(scope="module")
def condor_pool(lake):
    """The pool, up for this module, with the lake's CA visible to its jobs and a copy of the
    client certificate as their proxy; down (by PID, mounts undone) at the end."""
    if os.geteuid() != 0:
        pytest.skip("a personal HTCondor pool needs root (debootstrap, chroot, mounts)")
    if shutil.which("debootstrap") is None:
        pytest.skip("a personal HTCondor pool needs debootstrap (apt-get install debootstrap)")
    base = [NIGHTLAKE, "lake", "condor"]
    up = subprocess.run([*base, "up", "--dir", str(POOL), "--port", str(POOL_PORT), "--share", str(lake.certs),
                         "--proxy", str(lake.proxy)], capture_output=True, text=True, timeout=900)
    try:
        if up.returncode:
            pytest.skip(f"the personal HTCondor pool could not be started here: {up.stderr.strip()}")
        yield POOL
    finally:
        subprocess.run([*base, "down", "--dir", str(POOL)], capture_output=True, text=True, timeout=120)


def test_htcondor_two_jobs_ingest_a_night(lake, scratch, condor_pool):
    plan = Plan(load_spec(write_spec(scratch / "night.toml", "CLUSTERCONDOR", datasets=2, files=10)))
    logs = condor_pool / "shared" / "logs"
    logs.mkdir(exist_ok=True)
    logs.chmod(0o1777)
    env = {**os.environ, "PATH": f"{condor_pool / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(
        [NIGHTLAKE, "ingest", str(scratch / "night.toml"), "--rse", RSES[0].name, "--run", str(scratch / "run"),
         "--batch", "5", "--quiet", "--cluster", "htcondor:2", "--cluster-port", str(SCHEDULER_PORT),
         "--job-memory", "1GB", "--job-disk", "200MB", "--job-extra", "should_transfer_files = NO",
         "--job-extra", f'environment = "X509_USER_PROXY={condor_pool / "shared" / "x509up"}"'],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    assert_cli_lists(streamed(plan), RSES[0].name)
    assert summary(scratch / "run")["files"]["done"] == 20
    workers = {json.loads(line)["worker"] for line in (scratch / "run" / "events.jsonl").read_text().splitlines()
               if json.loads(line)["kind"] == "worker.batch"}
    assert workers and all(w.startswith("HTCondorCluster-") for w in workers), workers
    queue = subprocess.run(["chroot", str(condor_pool / "root"), "condor_q", "-af", "ClusterId"],
                           capture_output=True, text=True)
    assert queue.stdout.strip() == "", "the jobs outlived the run"
