"""Faults an RSE of the lake can be put in on purpose, so that ingest, rules and retrieval can be
tried against a failing storage element. Each fault is the storage's own behaviour, not a mock:
the clients see XRootD's real errors.

- `down`: the RSE's XRootD is stopped (connections refused); `lake up` leaves it stopped.
- `readonly`: the export is read-only: writes fail with `[3005] ... file path marked read/only`.
- `full`: the storage directory is overlaid (overlayfs) with a tmpfs that has no inode left: the
  files already there are read as before, and creating any file or directory fails with
  `No space left on device` before a byte is written. (A byte limit alone is not enough: XRootD
  5.5.3 acknowledges a write the disk cut short, and the file would be stored truncated.)
- `slow`: XrdThrottle limits the server's data rate to 256 kB/s.
- `error`: a share (half) of the files opened or created fail with EIO (`lake/flaky_fs.py`, a
  FUSE file system mounted over the storage directory), so XRootD answers those requests with
  `HTTP 500` (`Unable to create ...; input/output error`); the others go through.
- `denied`: the authorisation database is emptied: every request fails with `[3010] ...
  permission denied` (https: 403).

The faults in force are kept in `faults.json`, so `lake up` starts each XRootD as its fault says.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from nightlake import BadInput
from nightlake.lake import processes, xrootd
from nightlake.lake.layout import RSES, Layout, RSESpec

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, for python3-fusepy
FUSEPY = "/usr/lib/python3/dist-packages/fusepy.py"
ERROR_SHARE = 0.5  # the share of opens and creates the `error` fault fails
MODES = ("down", "readonly", "full", "slow", "error", "denied")


def current(layout: Layout) -> dict[str, str]:
    """{RSE name: mode} of the faults in force."""
    path = layout.root / "faults.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(layout: Layout, faults: dict[str, str]) -> None:
    (layout.root / "faults.json").write_text(json.dumps(faults, indent=2, sort_keys=True) + "\n")


def rse_named(name: str) -> RSESpec:
    for rse in RSES:
        if rse.name == name:
            return rse
    raise BadInput(f"unknown RSE {name!r}; the lake's RSEs are {', '.join(r.name for r in RSES)}")


@contextlib.contextmanager
def _storage_lock(layout: Layout):
    """One change of the RSE servers at a time: a fault being put or cleared, or the storage
    watchdog restarting a server, never both on the same PID files."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / "storage.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def inject(layout: Layout, name: str, mode: str, share: float | None = None) -> None:
    """Put the RSE in `mode` (replacing any fault it had) and restart its XRootD accordingly;
    `share`: the share of opens the `error` fault fails (ERROR_SHARE by default)."""
    rse = rse_named(name)
    if mode not in MODES:
        raise BadInput(f"unknown fault mode {mode!r}; choose one of {', '.join(MODES)}")
    with _storage_lock(layout):
        _undo(layout, rse)
        _save(layout, {**current(layout), rse.name: mode})
        if mode == "full":
            _mount_full(layout, rse)
        if mode == "error":
            _mount_flaky(layout, rse, ERROR_SHARE if share is None else share)
        if mode != "down":
            _restart(layout, rse, mode)


def clear(layout: Layout, name: str) -> None:
    """The RSE as `lake up` makes it, whatever fault it had."""
    rse = rse_named(name)
    with _storage_lock(layout):
        _undo(layout, rse)
        _save(layout, {k: v for k, v in current(layout).items() if k != rse.name})
        _restart(layout, rse, None)


def restart(layout: Layout, name: str) -> processes.Proc:
    """Restart the RSE's XRootD as its fault in force says (the storage watchdog's remedy)."""
    rse = rse_named(name)
    with _storage_lock(layout):
        return _restart(layout, rse, current(layout).get(rse.name))


def clear_all(layout: Layout) -> None:
    """Forget every fault and undo every mount a fault made (`full`'s overlay, `error`'s file
    system) (`lake down`: its processes are stopped already, and `--purge` must not delete through
    a mount)."""
    for rse in RSES:
        _unmount(layout, rse)
    (layout.root / "faults.json").unlink(missing_ok=True)


def _undo(layout: Layout, rse: RSESpec) -> None:
    _stop(layout, rse)
    _unmount(layout, rse)


def _stop(layout: Layout, rse: RSESpec) -> None:
    if (proc := processes.read(layout.pids, f"xrootd-{rse.name}")) is not None:
        processes.stop(layout.pids, proc, signal.SIGTERM)


def _restart(layout: Layout, rse: RSESpec, mode: str | None) -> processes.Proc:
    _stop(layout, rse)
    xrootd.prepare(layout, rse, fault=mode)
    return xrootd.start(layout, rse)


def _full_dirs(layout: Layout, rse: RSESpec):
    base = layout.root / "faults" / rse.name
    return base, base / "upper", base / "work"


def _mount_full(layout: Layout, rse: RSESpec) -> None:
    """A tmpfs takes new data over the storage directory (overlayfs), so the files already there
    are read from below; once the overlay is set up, the tmpfs is left exactly the inodes it
    uses, so whatever is created next meets ENOSPC."""
    base, upper, work = _full_dirs(layout, rse)
    base.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "size=4k,nr_inodes=64,mode=0755", "tmpfs", str(base)])
    upper.mkdir()
    work.mkdir()
    if user := xrootd.run_as():
        shutil.chown(upper, user, user)
    data = layout.rse_data(rse)
    _run(["mount", "-t", "overlay", "overlay", "-o",
          f"lowerdir={data},upperdir={upper},workdir={work}", str(data)])
    usage = os.statvfs(base)
    _run(["mount", "-o", f"remount,nr_inodes={usage.f_files - usage.f_ffree}", str(base)])


def _unmount(layout: Layout, rse: RSESpec) -> None:
    """Undo whatever a fault mounted over the RSE's storage: the `full` overlay and its tmpfs, or
    the `error` fault's file system (whose process ends with its mount; its PID is forgotten)."""
    base, _, _ = _full_dirs(layout, rse)
    for target in (layout.rse_data(rse), base):
        if _mounted(target):
            _run(["umount", str(target)])
    if (proc := processes.read(layout.pids, _flaky_name(rse))) is not None:
        processes.stop(layout.pids, proc, signal.SIGTERM)


def _flaky_name(rse: RSESpec) -> str:
    return f"flaky-fs-{rse.name}"


def _mount_flaky(layout: Layout, rse: RSESpec, share: float) -> None:
    """The `error` fault's FUSE file system over the storage directory, mounted before XRootD starts."""
    if not Path(FUSEPY).is_file():
        raise BadInput("the error fault needs python3-fusepy (and libfuse2): "
                       "apt-get install -y --no-install-recommends python3-fusepy libfuse2")
    data, name = layout.rse_data(rse), _flaky_name(rse)
    argv = [SYSTEM_PYTHON, str(Path(__file__).with_name("flaky_fs.py")), str(data), "--share", str(share)]
    proc = processes.start(layout.pids, name, argv, layout.logs / f"{name}.log", cwd=layout.root)
    processes.wait_ready(proc, lambda: _mounted(data), what=f"the error fault's file system for {rse.name}",
                         log=layout.logs / f"{name}.log", timeout=10, interval=0.05)


def _mounted(path) -> bool:
    mounts = open("/proc/self/mounts").read().split("\n")
    return any(line.split(" ")[1:2] == [str(path)] for line in mounts if line)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise BadInput(f"{' '.join(argv[:3])} failed: {result.stderr.strip() or result.returncode} "
                       f"(the full fault needs root and overlayfs)")


class LakeFaults:
    """The faults of one local lake, for a campaign's phase conditions: only the local lake can be
    put in a fault, so a fault asked of any other Rucio is refused before anything runs."""

    def __init__(self, layout: Layout, rucio_host: str) -> None:
        self.layout, self.rucio_host = layout, rucio_host

    def check(self, rse: str, mode: str) -> None:
        """The fault can be applied: a known mode, the catalog in use is this lake's, the RSE is its."""
        if mode not in MODES:
            raise BadInput(f"unknown fault {mode!r}; choose one of {', '.join(MODES)} (`nightlake lake fault`)")
        if not self.layout.state_file.exists():
            raise BadInput(f"fault = {mode!r} needs the local lake, and there is none in {self.layout.root} "
                           "(start it with `nightlake lake up`, or give its --lake-dir)")
        if self.rucio_host.rstrip("/") != self.layout.rucio_url:
            raise BadInput(f"fault = {mode!r} works only on the local lake: the Rucio server in use is "
                           f"{self.rucio_host}, the lake in {self.layout.root} is {self.layout.rucio_url}")
        rse_named(rse)

    def inject(self, rse: str, mode: str) -> None:
        inject(self.layout, rse, mode)

    def clear(self, rse: str) -> None:
        clear(self.layout, rse)
