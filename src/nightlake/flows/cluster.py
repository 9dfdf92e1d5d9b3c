"""The cluster: where the bytes move when a flow is given `--cluster` (Dask distributed).

One client machine is the limit for the bytes of a real night, so the byte-moving part of an
ingest or a retrieve can run on Dask workers while the command the user runs (the coordinator)
keeps what must stay single: the journal, reconcile and the bulk catalog stages. Workers get a
batch of files and hand back, per file, what they stored (size, adler32) or why not; one task per
batch, because a Dask task costs about 1.5 ms and a batch system's job seconds.

    local:N          a Dask LocalCluster of N worker processes on 127.0.0.1
    tcp://HOST:PORT  an existing Dask scheduler (its workers are someone else's)
    htcondor:N       N HTCondor jobs, each a Dask worker (dask-jobqueue)
    slurm:N          N SLURM jobs, each a Dask worker (dask-jobqueue)

A cluster this module starts is closed by it, whatever happens, and one that cannot start is a
`BadInput` with one line (exit 2). Without `--cluster` none of this is imported.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from nightlake import BadInput
from nightlake.catalog.failures import Classified, ErrorClass, classify
from nightlake.catalog.retry import CallFailed, ServiceDown

T = TypeVar("T")
KINDS = "local:N, tcp://HOST:PORT, htcondor:N or slurm:N"
START_TIMEOUT = 120.0  # seconds for the first worker of a cluster to join (a batch job queues)


@dataclass(frozen=True)
class JobOptions:
    """What each batch job of `htcondor:N` / `slurm:N` asks for (dask-jobqueue's own words).

    `queue`: the SLURM partition, or HTCondor's pool (collector `HOST:PORT`); `job_extra`:
    directives added to the job as they are (`--account=cta` for SLURM, `+AccountingGroup = "cta"`
    for HTCondor); `python`: the interpreter of the workers (must be nightlake's, on a shared file
    system); `log_directory`: where the jobs' logs go."""

    cores: int = 1
    memory: str = "2GB"
    disk: str = "1GB"
    queue: str | None = None
    job_extra: tuple[str, ...] = ()
    python: str = sys.executable
    log_directory: str | None = None
    walltime: str = "10:00:00"
    host: str = "127.0.0.1"  # the address the scheduler listens on: the submit node's, on a real farm


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed `--cluster`: its kind, how many workers (or the scheduler's address), the port of
    the scheduler it starts (0: the OS picks one) and the transfers each worker runs at once
    (a worker started here runs one batch at a time, `threads` files of it in parallel)."""

    kind: str
    workers: int = 0
    address: str | None = None
    port: int = 0
    threads: int = 4
    jobs: JobOptions = field(default_factory=JobOptions)

    def __str__(self) -> str:
        return self.address if self.kind == "tcp" else f"{self.kind}:{self.workers}"


def parse_cluster(text: str, *, port: int = 0, threads: int = 4, jobs: JobOptions | None = None) -> ClusterSpec:
    """`--cluster TEXT` as a `ClusterSpec`; anything else is refused with the forms it accepts."""
    jobs = jobs or JobOptions()
    if text.startswith("tcp://"):
        host, _, number = text[len("tcp://"):].rpartition(":")
        if not host or not number.isdigit() or not 0 < int(number) < 65536:
            raise BadInput(f"--cluster {text}: expected tcp://HOST:PORT")
        return ClusterSpec("tcp", address=text, threads=threads, jobs=jobs)
    kind, _, count = text.partition(":")
    if kind not in ("local", "htcondor", "slurm"):
        raise BadInput(f"--cluster {text}: unknown cluster kind {kind!r}; expected {KINDS}")
    if not count.isdigit() or not 0 < int(count) <= 1024:
        raise BadInput(f"--cluster {text}: expected {kind}:N with N workers, 1 to 1024")
    return ClusterSpec(kind, workers=int(count), port=port, threads=threads, jobs=jobs)


def job_options(config: Path | None = None, **flags: Any) -> JobOptions:
    """The jobs' options: the `[cluster]` table of a TOML file, then the flags given (not None)."""
    options = JobOptions()
    if config is not None:
        try:
            table = tomllib.loads(config.read_text()).get("cluster", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadInput(f"--cluster-config {config}: {exc}") from None
        known = {f.name for f in fields(JobOptions)}
        if unknown := sorted(set(table) - known):
            raise BadInput(f"--cluster-config {config}: unknown key(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(known))}")
        options = replace(options, **{k: tuple(v) if k == "job_extra" else v for k, v in table.items()})
    given = {k: tuple(v) if k == "job_extra" else v for k, v in flags.items() if v not in (None, ())}
    return replace(options, **given)


@dataclass(frozen=True)
class Failure:
    """A worker's exception as plain data: the exception itself may not survive pickling (an
    XRootD status, a socket), its class and message must, so the coordinator journals it as if
    it had happened in its own thread."""

    error_class: str
    message: str
    attempts: int = 1
    target: str = "storage"
    patience: float | None = None  # set when the target stayed down past the patience window

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        if isinstance(exc, CallFailed):
            return cls(exc.classified.error_class.value, exc.classified.message, exc.attempts, exc.target,
                       exc.patience if isinstance(exc, ServiceDown) else None)
        classified = classify(exc)
        return cls(classified.error_class.value, classified.message)

    def exception(self) -> CallFailed:
        classified = Classified(ErrorClass(self.error_class), self.message)
        if self.patience is not None:
            return ServiceDown(self.target, classified, self.attempts, RuntimeError(self.message), self.patience)
        return CallFailed(self.target, classified, self.attempts, RuntimeError(self.message))


@dataclass(frozen=True)
class BatchDone:
    """What a worker hands back for a batch: per file its result or its `Failure`, who did it and
    how long it took (the per-worker throughput of progress and report)."""

    results: list[Any]
    worker: str
    seconds: float
    bytes: int


def run_batch(work: Callable[[T], Any], items: list[T], size_of: Callable[[T], int], threads: int) -> BatchDone:
    """On a worker: `work` each item with `threads` in flight, every exception kept as a `Failure`
    in its place, so one file's problem never fails its batch."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: T) -> Any:
        try:
            return work(item)
        except Exception as exc:  # classified, handed back as data
            return Failure.of(exc)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, items))
    done = sum(size_of(i) for i, r in zip(items, results) if not isinstance(r, Failure))
    return BatchDone(results, _worker_name(), time.perf_counter() - started, done)


def _worker_name() -> str:
    with contextlib.suppress(ValueError, ImportError):
        from distributed import get_worker

        return str(get_worker().name)
    return f"{socket.gethostname()}:{os.getpid()}"


def visible(path: str) -> bool:
    """On a worker: whether `path` is a directory there."""
    return os.path.isdir(path)


class Cluster:
    """A Dask client on a cluster, and the one bounded loop that hands it batches."""

    def __init__(self, spec: ClusterSpec, client: Any):
        self.spec, self.client = spec, client

    def workers(self) -> list[str]:
        """The names of the workers connected now."""
        return sorted(str(w["name"]) for w in self.client.scheduler_info()["workers"].values())

    def check_visible(self, path: Path, what: str) -> None:
        """`path` (a directory) must be the same on every worker: a directory source or a retrieve's
        destination on a shared file system. Asked of each worker before anything is written."""
        path = path.absolute()
        seen = self.client.run(visible, str(path))
        if blind := sorted(str(w) for w, ok in seen.items() if not ok):
            raise BadInput(f"{what} {path} is not visible from the cluster's worker(s) {', '.join(blind)}: "
                           f"it must be on a file system they share")

    def map_batches(self, fn: Callable[..., BatchDone], batches: Iterable[list[T]], in_flight: int,
                    **kwargs: Any) -> Iterator[tuple[list[T], BatchDone | BaseException]]:
        """`fn(batch, **kwargs)` on the workers, at most `in_flight` batches at once; each batch is
        yielded with its `BatchDone`, or with the exception that lost it (a worker that died too
        often: `KilledWorker`), as it finishes. `batches` is pulled only when there is room, so a
        batch is prepared (journaled) just before it is sent. A worker lost mid-batch makes Dask
        run the batch again on another one; puts and gets are idempotent."""
        from distributed import as_completed

        source, sent = iter(batches), {}
        finished = as_completed()

        def send(count: int) -> None:
            for batch in itertools.islice(source, count):
                future = self.client.submit(fn, batch, pure=False, **kwargs)
                sent[future.key] = batch
                finished.add(future)

        send(in_flight)
        try:
            for future in finished:
                batch = sent.pop(future.key)
                try:
                    outcome: BatchDone | BaseException = future.result()
                except Exception as exc:  # the batch is lost, its files are settled by the caller
                    outcome = exc
                future.release()
                send(1)
                yield batch, outcome
        finally:
            for future in list(finished.futures):
                future.cancel()

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def open_cluster(spec: ClusterSpec, start_timeout: float = START_TIMEOUT) -> Iterator[Cluster]:
    """A connected `Cluster`; what this started (a LocalCluster, batch jobs) is closed on exit.
    A cluster that does not come up in `start_timeout` is refused in one line, nothing left running."""
    try:
        from distributed import Client
    except ImportError:
        raise BadInput("--cluster needs Dask: pip install 'nightlake[cluster]'") from None
    _quiet_dask()
    started = None
    try:
        started = _start(spec)
        client = Client(spec.address if started is None else started, timeout=f"{min(start_timeout, 30)}s")
        try:
            client.wait_for_workers(1, timeout=start_timeout)
        except Exception:
            client.close()
            raise
    except BadInput:
        _close(started)
        raise
    except Exception as exc:
        _close(started)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"--cluster {spec}: cannot start or reach the cluster: {reason}") from None
    cluster = Cluster(spec, client)
    try:
        client.register_plugin(_no_profiler(), name=NO_PROFILER)
        with _closed_on_sigterm():
            yield cluster
    finally:
        cluster.close()
        _close(started)


NO_PROFILER = "nightlake-no-profiler"


def _no_profiler() -> Any:
    """A worker plugin that stops Dask's statistical profiler on every worker of the cluster, those
    that join later (a batch job, a restarted worker) included.

    The profiler calls `sys._current_frames()` every 10 ms while a task runs. On CPython 3.11
    before 3.11.9 that call can deadlock the whole worker process (python/cpython#106883: a garbage
    collection inside it, with the interpreter's thread list locked, blocks on a lock while it
    holds the GIL). Its put threads then sit in their socket calls for good and its batch never
    comes back: Dask's 5-minute `worker-ttl` did not give such a worker up in 6 minutes. A batch's
    threads, each making short-lived objects by the thousand, make that collection likely. What
    the profiler gives (the dashboard's flame graph) nightlake never reads. Registered on a
    `tcp://` scheduler too: its workers run nightlake's batches."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class NoProfiler(WorkerPlugin):
        idempotent = True

        def setup(self, worker: Any) -> None:
            # popped, not only stopped: a worker starts its periodic callbacks after its plugins
            for name in ("profile", "profile-cycle"):
                if (callback := worker.periodic_callbacks.pop(name, None)) is not None:
                    callback.stop()
    return NoProfiler()


@contextlib.contextmanager
def _closed_on_sigterm() -> Iterator[None]:
    """A coordinator stopped with SIGTERM (a batch system's, a user's kill) still closes the cluster
    it started: Python's default SIGTERM ends the process without running `finally`, which would
    leave a LocalCluster's workers or the batch jobs running. The run resumes from the journal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start(spec: ClusterSpec) -> Any:
    """The cluster object for the kinds this starts; None for a scheduler that already runs."""
    if spec.kind == "tcp":
        return None
    if spec.kind == "local":
        from distributed import LocalCluster

        return LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", scheduler_port=spec.port, dashboard_address=_http(spec),
                            worker_dashboard_address=None)
    cluster = jobqueue_cluster(spec)
    cluster.scale(jobs=spec.workers)
    return cluster


def _http(spec: ClusterSpec) -> str:
    """The scheduler's HTTP server (health, metrics; it always runs): the port after the scheduler's,
    never Dask's default 8787."""
    return f"{spec.jobs.host if spec.kind != 'local' else '127.0.0.1'}:{spec.port + 1 if spec.port else 0}"


def jobqueue_cluster(spec: ClusterSpec) -> Any:
    """The dask-jobqueue cluster of `htcondor:N` / `slurm:N` (its scheduler on this machine; the
    jobs are submitted when it is scaled). `job_script()` shows what would be submitted."""
    import dask_jobqueue

    jobs = spec.jobs
    common = dict(cores=jobs.cores, processes=1, memory=jobs.memory, python=jobs.python,
                  log_directory=jobs.log_directory, job_script_prologue=_trust_anchors(),
                  scheduler_options={"host": jobs.host, "port": spec.port, "dashboard_address": _http(spec)},
                  worker_extra_args=["--host", jobs.host] if jobs.host.startswith("127.") else [])
    if spec.kind == "slurm":
        return dask_jobqueue.SLURMCluster(queue=jobs.queue, walltime=jobs.walltime,
                                          job_extra_directives=list(jobs.job_extra), **common)
    extra = {key.strip(): value.strip() for key, value in (line.split("=", 1) for line in jobs.job_extra)}
    pool = ["-pool", jobs.queue] if jobs.queue else None
    return dask_jobqueue.HTCondorCluster(disk=jobs.disk, job_extra_directives=extra, submit_command_extra=pool,
                                         cancel_command_extra=pool, **common)


def _trust_anchors() -> list[str]:
    """A batch job starts with the pool's environment, not ours: the CA directory the storage's TLS
    and GSI are verified against (X509_CERT_DIR) goes with it. The job's proxy is its own
    (X509_USER_PROXY in the job's environment, `--job-extra`), never a copy of the coordinator's."""
    return [f"export X509_CERT_DIR={shlex.quote(path)}"] if (path := os.environ.get("X509_CERT_DIR")) else []


def job_script(spec: ClusterSpec) -> str:
    """The batch job script `htcondor:N` / `slurm:N` submits (its scheduler is started to write it,
    then closed): what a site's admin reads before the first night, and what is tested here."""
    cluster = jobqueue_cluster(spec)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _close(started: Any) -> None:
    if started is not None:
        with contextlib.suppress(Exception):
            started.close()


def _quiet_dask() -> None:
    """Dask's own warnings (a worker lost, a slow event loop) are the coordinator's events to tell,
    not lines on the user's terminal."""
    import logging

    logging.getLogger("distributed").setLevel(logging.CRITICAL)
