"""The cluster module without a lake: `--cluster` parsed or refused in one line, the job options
from flags and a config file, the batch job scripts dask-jobqueue would submit (SLURM can only be
tested so here: there is no SLURM), a worker's failures as data, and per-worker throughput in
progress, metrics and the report."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import TEST_PORT_BASE
from nightlake import BadInput
from nightlake.catalog.failures import ErrorClass
from nightlake.catalog.retry import CallFailed, ServiceDown
from nightlake.cli import cli
from nightlake.cli.progress import ProgressLog
from nightlake.flows.cluster import (
    Failure,
    JobOptions,
    job_options,
    job_script,
    open_cluster,
    parse_cluster,
    run_batch,
)
from nightlake.flows.ingest.upload import (
    HTTPS_NO_PROGRESS,
    ROOT_NO_PROGRESS,
    RemoteStorage,
    put_timeout,
)
from nightlake.observe.events import Event, Kind
from nightlake.observe.metrics import Metrics
from nightlake.observe.report.timeline import workers

PORT = TEST_PORT_BASE + 410


@pytest.mark.parametrize("text, kind, workers, address", [
    ("local:4", "local", 4, None), ("tcp://127.0.0.1:8786", "tcp", 0, "tcp://127.0.0.1:8786"),
    ("htcondor:15", "htcondor", 15, None), ("slurm:2", "slurm", 2, None)])
def test_the_four_kinds_parse(text, kind, workers, address):
    spec = parse_cluster(text)
    assert (spec.kind, spec.workers, spec.address, str(spec)) == (kind, workers, address, text)


@pytest.mark.parametrize("text, says", [
    ("kubernetes:2", "unknown cluster kind 'kubernetes'"), ("local", "expected local:N"),
    ("local:0", "expected local:N"), ("tcp://nohost", "expected tcp://HOST:PORT"),
    ("slurm:x", "expected slurm:N")])
def test_anything_else_is_refused_with_the_forms_it_accepts(text, says):
    with pytest.raises(BadInput, match=says):
        parse_cluster(text)


def test_job_options_come_from_a_file_and_the_flags_win(tmp_path):
    config = tmp_path / "cluster.toml"
    config.write_text('[cluster]\ncores = 2\nmemory = "4GB"\nqueue = "short"\njob_extra = ["--account=cta"]\n')
    options = job_options(config, memory="8GB", cores=None, job_extra=())
    assert options == JobOptions(cores=2, memory="8GB", queue="short", job_extra=("--account=cta",))
    config.write_text("[cluster]\ncpus = 2\n")
    with pytest.raises(BadInput, match="unknown key.*cpus"):
        job_options(config)


def test_a_slurm_job_script_carries_the_options():
    jobs = JobOptions(cores=2, memory="4GB", queue="short", job_extra=("--account=cta",), walltime="02:00:00")
    script = job_script(parse_cluster("slurm:3", port=PORT, jobs=jobs))
    for line in ("#SBATCH -p short", "#SBATCH --cpus-per-task=2", "#SBATCH -t 02:00:00", "#SBATCH --account=cta",
                 f"tcp://127.0.0.1:{PORT}"):
        assert line in script, script


def test_an_htcondor_job_script_carries_the_options():
    jobs = JobOptions(memory="1GB", disk="2GB", job_extra=('+AccountingGroup = "cta"',))
    script = job_script(parse_cluster("htcondor:2", port=PORT + 1, jobs=jobs))
    for line in ("RequestDisk", "MY.DaskWorkerDisk = 2000000000", '+AccountingGroup = "cta"',
                 f"tcp://127.0.0.1:{PORT + 1}", "--host 127.0.0.1"):
        assert line in script, script


def test_print_job_script_prints_and_exits_before_anything_else(tmp_path):
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "night.toml"), "--rse", "X", "--run",
                                      str(tmp_path / "run"), "--cluster", "slurm:2", "--cluster-port",
                                      str(PORT + 2), "--print-job-script"])
    assert result.exit_code == 0 and "#SBATCH" in result.output
    assert not (tmp_path / "run").exists()


def test_a_batch_that_cannot_start_is_refused_in_one_line_and_leaves_nothing(tmp_path):
    """A SLURM cluster here: no sbatch, so no worker ever joins."""
    with pytest.raises(BadInput, match="cannot start or reach the cluster") as refused:
        with open_cluster(parse_cluster("slurm:1", port=PORT + 3), start_timeout=3):
            pass
    assert "\n" not in str(refused.value)


def _profiling(dask_worker) -> list[str]:
    return sorted(name for name in dask_worker.periodic_callbacks if name.startswith("profile"))


def test_workers_run_without_the_profiler_that_can_deadlock_them():
    """Dask's profiler samples `sys._current_frames()`, which on CPython 3.11 before 3.11.9 can
    deadlock a worker holding the GIL (python/cpython#106883; it froze puts mid-batch). A cluster
    opened here has it off on every worker, one restarted after a loss included."""
    with open_cluster(parse_cluster("local:1", port=PORT + 4)) as cluster:
        client = cluster.client
        assert list(client.run(_profiling).values()) == [[]]
        client.restart()
        assert list(client.run(_profiling).values()) == [[]]


def test_a_failure_on_a_worker_comes_back_as_the_same_class_and_message():
    def work(x):
        if x == 2:
            raise CallFailed("ONSITE", _classified(ErrorClass.AUTH, "403 Forbidden"), 1, RuntimeError())
        if x == 3:
            raise ServiceDown("ONSITE", _classified(ErrorClass.TRANSIENT_STORAGE, "down"), 4, RuntimeError(), 60.0)
        return x * 10

    done = run_batch(work, [1, 2, 3], lambda x: x, threads=2)
    assert done.results[0] == 10 and done.bytes == 1
    auth, down = done.results[1].exception(), done.results[2].exception()
    assert type(auth) is CallFailed and auth.classified.error_class is ErrorClass.AUTH
    assert "403 Forbidden" in str(auth)
    assert isinstance(down, ServiceDown) and down.patience == 60.0
    assert Failure.of(ValueError("odd")).exception().classified.error_class is ErrorClass.PERMANENT


def _classified(error_class, message):
    from nightlake.catalog.failures import Classified

    return Classified(error_class, message)


def test_per_worker_throughput_in_progress_metrics_and_report():
    events = [Event(Kind.WORKER_BATCH, {"worker": w, "files": 10, "bytes": 10_000_000, "seconds": 2.0})
              for w in ("w0", "w1", "w0")]
    lines = []
    log = ProgressLog(type("C", (), {"print": lambda self, line, markup: lines.append(line)})(), every=0,
                      clock=iter(range(100)).__next__)
    metrics = Metrics()
    for event in events:
        log(event)
        metrics(event)
    assert "workers: w0 " in lines[-1] and ", w1 " in lines[-1]
    assert metrics.registry.get_sample_value("nightlake_worker_files_total", {"worker": "w0"}) == 20
    report = workers([{"kind": e.kind, "ts": 0, **e.fields} for e in events])
    assert report[0] == {"worker": "w0", "batches": 2, "files": 20, "bytes": 20_000_000, "busy_s": 4.0,
                         "files_per_s": 5.0, "mb_per_s": 5.0}


def test_a_worker_put_that_gets_no_answer_fails_in_30_or_60_s_not_120():
    """XRootD 5.5.3 now and then never answers a PUT or a part's checksum: a worker's storage gives
    such a request up after 30 s over https, 60 s over root:// (XrdCl counts a server's 30 s
    kXR_wait in it), a transient error that is retried, where each used to hold its batch 120 s."""
    https = {"scheme": "https", "hostname": "127.0.0.1", "port": 1, "prefix": "/rucio/"}
    remote = RemoteStorage("ONSITE", https, {}, True, None, 0.0, 2, put_timeout(https))
    assert remote.open()._timeout == (10.0, HTTPS_NO_PROGRESS) == (10.0, 30.0)
    root = {**https, "scheme": "root"}
    assert put_timeout(root) == ROOT_NO_PROGRESS == 60.0
    assert RemoteStorage("ONSITE", root, {}, True, None, 0.0, 2, put_timeout(root)).open()._timeout == 60
