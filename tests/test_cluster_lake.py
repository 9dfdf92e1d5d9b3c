"""Ingest and retrieve on a Dask cluster against the real lake, checked with the stock rucio CLI:
`local:N` gives what a run without a cluster gives, a `tcp://` scheduler's workers all do work,
a worker killed mid-run loses nothing, and what cannot work is refused in one line (exit 2)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TEST_PORT_BASE
from ingest_helpers import (
    assert_cli_lists,
    journal_counts,
    listed_by_cli,
    nightlake,
    stored_files,
    streamed,
    summary,
    write_spec,
)
from nightlake.lake.layout import RSES
from nightlake.night.plan import Plan
from nightlake.night.spec import load_spec

pytestmark = pytest.mark.lake
ONSITE = RSES[0].name
PORT = TEST_PORT_BASE + 400  # Dask schedulers of these tests


def _ingest(spec: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    return nightlake("ingest", str(spec), "--rse", ONSITE, "--run", str(run), "--batch", "10", "--quiet", *extra)


def _worker_batches(run: Path) -> dict[str, int]:
    """Files per cluster worker, from the run's event log."""
    per_worker: dict[str, int] = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["kind"] == "worker.batch":
            per_worker[event["worker"]] = per_worker.get(event["worker"], 0) + event["files"]
    return per_worker


def test_local_cluster_ingest_and_retrieve_give_what_a_run_without_one_gives(lake, scratch):
    """The same night, ingested with and without `local:2`: the same files, sizes, adler32s and
    metadata in Rucio; retrieved with `local:2`: the very bytes."""
    by_cluster = Plan(load_spec(write_spec(scratch / "a.toml", "CLUSTERLOCAL", datasets=2, files=15)))
    alone = Plan(load_spec(write_spec(scratch / "b.toml", "CLUSTERNONE", datasets=2, files=15)))
    result = _ingest(scratch / "a.toml", scratch / "run-a", "--cluster", "local:2", "--cluster-port", str(PORT))
    assert result.returncode == 0, result.stderr
    assert _ingest(scratch / "b.toml", scratch / "run-b").returncode == 0
    files = streamed(by_cluster)
    assert_cli_lists(files, ONSITE)
    assert summary(scratch / "run-a")["files"]["done"] == 30
    assert len(_worker_batches(scratch / "run-a")) == 2
    assert_cli_lists(streamed(alone), ONSITE)
    for mine, theirs in zip(by_cluster.datasets(), alone.datasets()):  # the same state, other site names
        assert len(listed_by_cli(mine.name, ONSITE)) == len(listed_by_cli(theirs.name, ONSITE)) == 15
        assert _did_state(mine.name) == _did_state(theirs.name)

    out = scratch / "out"
    dataset = next(by_cluster.datasets()).name
    result = nightlake("retrieve", f"cta:{dataset}", "--out", str(out), "--run", str(scratch / "get"), "--quiet",
                       "--batch", "5", "--cluster", "local:2", "--cluster-port", str(PORT + 1))
    assert result.returncode == 0, result.stderr
    mine = [f for f in files if f.dataset == dataset]
    assert sorted(p.name for p in (out / "cta").iterdir()) == sorted(f.name for f in mine)
    for f in mine:
        assert (out / "cta" / f.name).read_bytes() == f.content(), f.name


def _did_state(dataset: str) -> tuple:
    """A dataset's state in Rucio that does not depend on its name: open or closed, its rules."""
    from rucio.client import Client

    client = Client()
    rules = sorted((r["rse_expression"], r["copies"], r["state"]) for r in client.list_did_rules("cta", dataset))
    return client.get_did("cta", dataset)["open"], rules


@contextlib.contextmanager
def _scheduler(port: int, workers: int, log: Path):
    """A Dask scheduler and `workers` worker processes (no nanny: a killed worker stays dead), on
    127.0.0.1, stopped by their PIDs."""
    dask = [sys.executable, "-m", "distributed.cli"]
    procs = [subprocess.Popen([*dask[:2], "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], stdout=log.open("a"), stderr=subprocess.STDOUT)]
    try:
        for i in range(workers):
            procs.append(subprocess.Popen(
                [*dask[:2], "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}", "--host", "127.0.0.1",
                 "--nthreads", "1", "--name", f"w{i}", "--no-nanny", "--no-dashboard"],
                stdout=log.open("a"), stderr=subprocess.STDOUT))
        yield procs[1:]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:  # a worker whose scheduler went first may linger
                proc.kill()
                proc.wait()


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(count, timeout=60)


def test_tcp_scheduler_two_workers_both_do_work(lake, scratch):
    plan = Plan(load_spec(write_spec(scratch / "night.toml", "CLUSTERTCP", datasets=2, files=20)))
    address = f"tcp://127.0.0.1:{PORT + 2}"
    with _scheduler(PORT + 2, 2, scratch / "dask.log"):
        _wait_for_workers(address, 2)
        result = _ingest(scratch / "night.toml", scratch / "run", "--cluster", address)
    assert result.returncode == 0, result.stderr
    assert_cli_lists(streamed(plan), ONSITE)
    per_worker = _worker_batches(scratch / "run")
    assert sorted(per_worker) == ["w0", "w1"] and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == 40


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(lake, scratch):
    """One of two workers is killed (SIGKILL) while its batch is in flight: Dask runs the batch
    again on the other one, the run completes, each file is in Rucio and on storage once."""
    plan = Plan(load_spec(write_spec(scratch / "night.toml", "CLUSTERKILL", datasets=2, files=40,
                                     size="200 kB")))
    address = f"tcp://127.0.0.1:{PORT + 3}"
    with _scheduler(PORT + 3, 2, scratch / "dask.log") as workers:
        _wait_for_workers(address, 2)
        run = scratch / "run"
        proc = subprocess.Popen([*_argv(scratch / "night.toml", run), "--cluster", address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while journal_counts(run / "journal.sqlite").get("uploaded", 0) + \
                journal_counts(run / "journal.sqlite").get("done", 0) < 10 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.05)
        os.kill(workers[0].pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    files = streamed(plan)
    assert_cli_lists(files, ONSITE)  # each name once, with its size and adler32
    assert summary(run)["files"]["done"] == 80
    assert not [p for p in stored_files(lake, RSES[0]) if p.endswith(".nightlake-part")]


def _argv(spec: Path, run: Path) -> list[str]:
    from conftest import NIGHTLAKE

    return [NIGHTLAKE, "ingest", str(spec), "--rse", ONSITE, "--run", str(run), "--batch", "5", "--quiet"]


@pytest.mark.parametrize("cluster, says", [
    ("tcp://127.0.0.1:{port}", "cannot start or reach the cluster"),
    ("kubernetes:2", "unknown cluster kind 'kubernetes'"),
], ids=["unreachable-scheduler", "unknown-kind"])
def test_a_cluster_that_cannot_work_is_refused_in_one_line(lake, scratch, cluster, says):
    write_spec(scratch / "night.toml", "CLUSTERBAD", datasets=1, files=2)
    result = _ingest(scratch / "night.toml", scratch / "run", "--cluster", cluster.format(port=PORT + 9))
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (scratch / "run").exists()


def test_a_directory_the_workers_cannot_see_is_refused_in_one_line(lake, scratch):
    """A directory source that a worker cannot see: nothing is journaled, nothing is uploaded."""
    source = scratch / "night"
    address = f"tcp://127.0.0.1:{PORT + 4}"
    with _scheduler(PORT + 4, 1, scratch / "dask.log"):
        _wait_for_workers(address, 1)
        source.mkdir()
        (source / "a.fits").write_bytes(b"x" * 10)
        from distributed import Client

        def hide(path: str) -> None:
            """In the worker: `path` is not there from now on, as on a node without the file system
            (this machine has no second node, nor a mount namespace to give a worker a view of its own)."""
            from nightlake.flows import cluster

            seen = cluster.visible
            cluster.visible = lambda p: False if p == path else seen(p)

        with Client(address) as client:
            client.run(hide, str(source))
        result = nightlake("ingest", str(source), "--scope", "cta", "--rse", ONSITE, "--run", str(scratch / "run"),
                           "--quiet", "--cluster", address)
    assert result.returncode == 2
    assert "not visible from the cluster's worker(s)" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (scratch / "run").exists()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait for whoever reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_coordinator_stopped_mid_run_leaves_no_worker_and_the_rerun_completes(lake, scratch):
    """SIGTERM to the command (a batch system's stop): its LocalCluster is closed, no worker
    process is left; the same command again resumes and completes the night."""
    plan = Plan(load_spec(write_spec(scratch / "night.toml", "CLUSTERSTOP", datasets=2, files=30)))
    run = scratch / "run"
    argv = [*_argv(scratch / "night.toml", run), "--cluster", "local:2", "--cluster-port", str(PORT + 5)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while journal_counts(run / "journal.sqlite").get("uploading", 0) == 0 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    deadline = time.monotonic() + 60
    while (alive := [p for p in workers if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"processes of the stopped run still running: {alive}"
    result = _ingest(scratch / "night.toml", run, "--cluster", "local:2", "--cluster-port", str(PORT + 6))
    assert result.returncode == 0, result.stderr
    assert_cli_lists(streamed(plan), ONSITE)
    assert summary(run)["files"]["done"] == 60
