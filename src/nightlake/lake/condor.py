"""A personal HTCondor pool on 127.0.0.1, for `--cluster htcondor:N` demos and tests.

Debian bookworm has no HTCondor and the PyPI wheel has no daemons, so the pool is Debian trixie's
`minicondor` in a debootstrap chroot (`nightlake lake condor up`): its daemons run as root in the
chroot, jobs as an unprivileged user (`JOB_USER`). What the Dask workers need is bind-mounted
read-only at the same paths (this Python, its venv, nightlake's source), with one shared
directory for the jobs' logs and their delegated proxy (a copy of the client certificate, owned
by the job user, as a grid job gets one). `bin/` holds `condor_submit`, `condor_rm` and `condor_q`
for dask-jobqueue, which run the chroot's own as the job user.

Everything lives in one directory; the master's PID is recorded, `down` stops exactly it and
unmounts exactly what `up` mounted (listed in `mounts.txt`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nightlake import BadInput
from nightlake.lake import processes

SUITE, MIRROR = "trixie", "http://deb.debian.org/debian"
JOB_USER, JOB_UID = "ingest", 1500
PORTS = 50  # the pool's loopback ports: the shared port (collector and all daemons) and its own range
CONFIG = f"""# nightlake's personal pool: IPv4 loopback only, jobs as {JOB_USER}
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
ENABLE_IPV6 = False
UID_DOMAIN = nightlake
TRUST_UID_DOMAIN = True
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS
NUM_CPUS = 2
# a chroot: no per-job mount namespace, no cgroups
MOUNT_UNDER_SCRATCH =
BASE_CGROUP =
CGROUP_MEMORY_LIMIT_POLICY = none
"""
PORT_CONFIG = """# written by every `up`: the pool's ports
COLLECTOR_HOST = 127.0.0.1:{port}
SHARED_PORT_PORT = {port}
LOWPORT = {low}
HIGHPORT = {high}
"""
SHIM = """#!/bin/sh
# {name} for dask-jobqueue: the pool's own, run in its chroot as {user}{stdin_note}
exec chroot --userspec={user}:{user} {root} sh -c 'cd {shared} && exec {name} "$@"' {name} {args}
"""


class Pool:
    """The pool's directory: `root/` (the chroot), `shared/`, `bin/`, `pids/`, `log/`, `mounts.txt`."""

    def __init__(self, path: Path):
        self.path = path.absolute()
        self.root, self.shared, self.bin = self.path / "root", self.path / "shared", self.path / "bin"
        self.pids, self.log, self.mounts = self.path / "pids", self.path / "log", self.path / "mounts.txt"

    @property
    def proxy(self) -> Path:
        """The jobs' delegated proxy (a copy of the client certificate, owned by the job user)."""
        return self.shared / "x509up"

    def master(self) -> processes.Proc | None:
        proc = processes.read(self.pids, "condor-master")
        return proc if proc and proc.alive() else None

    def env(self) -> dict[str, str]:
        """What a submitting process needs: the shims first on PATH."""
        return {"PATH": f"{self.bin}:{os.environ.get('PATH', '')}"}


def up(pool: Pool, port: int, share: list[Path], client_cert: Path | None, echo=print, timeout: float = 60.0) -> bool:
    """Bootstrap (once), mount, start the master (its ports: `port` to `port` + `PORTS` - 1) and wait
    for a slot and a schedd; False if it is up already."""
    if pool.master():
        return False
    _check_tools()
    if not (pool.root / "bin" / "bash").exists():
        echo(f"bootstrapping a Debian {SUITE} chroot with minicondor (once, about a minute)")
        _bootstrap(pool)
    _mount_all(pool, share)
    _shims(pool)
    (pool.root / "etc" / "condor" / "config.d" / "98-nightlake-ports").write_text(
        PORT_CONFIG.format(port=port, low=port + 1, high=port + PORTS - 1))
    if client_cert is not None:
        shutil.copy(client_cert, pool.proxy)
        os.chown(pool.proxy, JOB_UID, JOB_UID)
        pool.proxy.chmod(0o600)
    try:
        proc = processes.start(pool.pids, "condor-master",
                               ["chroot", str(pool.root), "/usr/sbin/condor_master", "-f"], pool.log / "condor-master.log")
        proc = _exec_of(proc, "condor_master")
        processes.pid_file(pool.pids, proc.name).write_text(f'{{"pid": {proc.pid}, "exe": "condor_master"}}')
        processes.wait_ready(proc, lambda: _ready(pool), what="the HTCondor master",
                             log=pool.log / "condor-master.log", timeout=timeout, interval=0.5)
    except BaseException:
        down(pool, echo=lambda line: None)  # a pool that did not start leaves nothing running or mounted
        raise
    echo(f"HTCondor pool up (master PID {proc.pid}), collector 127.0.0.1:{port}")
    return True


def down(pool: Pool, echo=print) -> None:
    """Stop the master by its PID (it stops its daemons), then undo exactly the mounts `up` made."""
    if (proc := processes.read(pool.pids, "condor-master")) is not None:
        processes.stop(pool.pids, proc, timeout=30.0)
        echo(f"stopped the HTCondor master (PID {proc.pid})")
    if pool.mounts.exists():
        for target in reversed(pool.mounts.read_text().split("\n")):
            if target and _mounted(Path(target)):
                subprocess.run(["umount", target], check=False)
        pool.mounts.unlink()


def _exec_of(proc: processes.Proc, name: str, timeout: float = 10.0) -> processes.Proc:
    """`chroot` started the master by exec'ing it: the same PID, another program, once it has (its
    first argument is the program: chroot's own command line names it too, further on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            program = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if Path(program).name == name:
                break
        except OSError:
            break
        time.sleep(0.05)
    return processes.Proc(proc.name, proc.pid, name)


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise BadInput("a personal HTCondor pool needs root (debootstrap, chroot, mounts)")
    if shutil.which("debootstrap") is None:
        raise BadInput("a personal HTCondor pool needs debootstrap: apt-get install debootstrap")


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BadInput(f"{what} failed ({result.returncode}): {tail[0]}")


def _bootstrap(pool: Pool) -> None:
    root = pool.root
    _run(["debootstrap", "--variant=minbase", "--include=ca-certificates", SUITE, str(root), MIRROR],
         f"debootstrap {SUITE}")
    for name in ("resolv.conf", "hosts"):  # the host name must resolve in the chroot
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _mount_all(pool, [])
    _run(["chroot", str(root), "sh", "-c", "apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get install "
          "-y -q --no-install-recommends minicondor python3"], "installing minicondor in the chroot")
    _run(["chroot", str(root), "useradd", "-m", "-u", str(JOB_UID), JOB_USER], "adding the job user")
    _run(["chroot", str(root), "sh", "-c", "install -d -o condor -g condor -m 0775 /run/condor /var/lock/condor "
          "/var/spool/condor /var/lib/condor && install -d -o condor -g condor -m 0755 /var/lib/condor/execute"],
         "making HTCondor's directories")
    (root / "etc" / "condor" / "config.d" / "99-nightlake").write_text(CONFIG)


def _mount_all(pool: Pool, share: list[Path]) -> None:
    """The chroot's kernel file systems, the shared directory, and `share` (read-only, same path)."""
    root = pool.root
    pool.shared.mkdir(parents=True, exist_ok=True)
    pool.shared.chmod(0o1777)
    binds = [(["-t", "proc", "proc"], root / "proc"), (["-t", "sysfs", "sys"], root / "sys"),
             (["--bind", "/dev"], root / "dev"), (["--bind", "/dev/pts"], root / "dev/pts"),
             (["-t", "tmpfs", "-o", "mode=1777", "tmpfs"], root / "dev/shm"),  # the Dask nanny's semaphores
             (["--bind", str(pool.shared)], root / str(pool.shared).lstrip("/"))]
    binds += [(["--bind", str(p)], root / str(p.absolute()).lstrip("/")) for p in share]
    for options, target in binds:
        if _mounted(target):
            continue
        target.mkdir(parents=True, exist_ok=True)
        _run(["mount", *options, str(target)], f"mounting {target}")
        with open(pool.mounts, "a") as mounts:
            mounts.write(f"{target}\n")
        if options[0] == "--bind" and Path(options[1]) in share:
            _run(["mount", "-o", "remount,ro,bind", str(target)], f"making {target} read-only")
    for p in share:  # the job user must be able to walk down to what is shared
        for parent in [*Path(root / str(p.absolute()).lstrip("/")).parents]:
            if parent == root or not parent.is_relative_to(root):
                break
            parent.chmod(parent.stat().st_mode | 0o755)


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


def _shims(pool: Pool) -> None:
    """condor_submit reads the job from its stdin (the chroot cannot see the host's /tmp)."""
    pool.bin.mkdir(parents=True, exist_ok=True)
    for name, args, note in (("condor_submit", '< "$(eval echo \\${$#})"', ": the job file on stdin"),
                             ("condor_rm", '"$@"', ""), ("condor_q", '"$@"', "")):
        shim = pool.bin / name
        shim.write_text(SHIM.format(name=name, user=JOB_USER, root=pool.root, shared=pool.shared, args=args,
                                    stdin_note=note))
        shim.chmod(0o755)


def _ready(pool: Pool) -> bool:
    """A slot and a schedd in the collector."""
    def names(*args: str) -> list[str]:
        result = subprocess.run(["chroot", str(pool.root), "condor_status", *args, "-af", "Name"],
                                capture_output=True, text=True)
        return result.stdout.split() if result.returncode == 0 else []
    return bool(names()) and bool(names("-schedd"))


def worker_shares() -> list[Path]:
    """What a Dask worker in the pool needs to see at the same path: this Python, its venv, and the
    source nightlake runs from."""
    import nightlake

    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(nightlake.__file__).resolve().parents[1]}
    return sorted(p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths))

