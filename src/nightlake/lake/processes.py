"""Start the lake's daemons detached, remember their PIDs, and stop exactly those PIDs.

A PID file alone is not proof: after a reboot the number may belong to someone else. Each PID file
therefore also records the executable we started, and a PID only counts as ours while
`/proc/PID/cmdline` still names it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nightlake import BadInput


@dataclass(frozen=True)
class Proc:
    """A process the lake started: its name, PID and the executable it runs."""

    name: str
    pid: int
    exe: str

    def alive(self) -> bool:
        """True while the PID exists, is not a zombie, and still runs our executable.

        A process that is dropping privileges (XRootD's `-R`) can briefly hide its /proc entries;
        an unreadable or empty command line therefore counts as ours, a different one does not."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        try:
            if Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return True
        if not cmdline[0]:
            return True
        return any(Path(arg.decode(errors="replace")).name == Path(self.exe).name for arg in cmdline[:2])


def pid_file(pids: Path, name: str) -> Path:
    return pids / f"{name}.json"


def read(pids: Path, name: str) -> Proc | None:
    """The recorded process `name`, or None when it was never started here."""
    try:
        data = json.loads(pid_file(pids, name).read_text())
    except (OSError, ValueError):
        return None
    return Proc(name, int(data["pid"]), data["exe"])


def recorded(pids: Path) -> list[Proc]:
    """Every process this lake has a PID file for."""
    if not pids.is_dir():
        return []
    return [p for f in sorted(pids.glob("*.json")) if (p := read(pids, f.stem))]


def start(pids: Path, name: str, argv: list[str], log: Path, *, env: dict | None = None,
          cwd: Path | None = None, user: str | None = None) -> Proc:
    """Start `argv` in its own session, output to `log`, and record its PID before returning."""
    pids.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, user=user, group=user, extra_groups=[] if user else None,
        )
    proc = Proc(name, popen.pid, argv[0])
    pid_file(pids, name).write_text(json.dumps({"pid": proc.pid, "exe": proc.exe, "argv": argv}))
    return proc


def wait_ready(proc: Proc, ready: Callable[[], bool], *, what: str, log: Path, timeout: float,
               interval: float = 0.1) -> Proc:
    """Wait until a process just started answers; one line naming its log when it dies or stays mute."""
    outcome = _wait(proc, ready, time.monotonic() + timeout, interval)
    if outcome == "exited":
        raise BadInput(f"{what} exited at start (log: {log})")
    if outcome == "mute":
        raise BadInput(f"{what} did not answer within {timeout:g} s (log: {log})")
    return proc


# How a server says its port is taken: XRootD, PostgreSQL and Python (EADDRINUSE), Node, gunicorn.
PORT_TAKEN = re.compile(r"address already in use|EADDRINUSE|connection in use", re.IGNORECASE)
RESTART_AFTER = 0.5  # seconds between the starts of a server whose port was taken


def serve(pids: Path, name: str, argv: list[str], log: Path, *, ready: Callable[[], bool], what: str,
          timeout: float, interval: float = 0.1, errors: Path | None = None,
          why: Callable[[str], str] | None = None, **options) -> Proc:
    """Start a server (`start`) and wait until it answers, starting it again while its port is taken.

    Why the second start: where the kernel's ephemeral port range covers the lake's ports (Linux's
    `ip_local_port_range`, 1024-65535 on some machines), an outgoing connection made while a
    server is being restarted can be given the server's port as its source port, and the server's
    bind then fails with EADDRINUSE until that connection closes, usually within a second. A start
    whose log (`errors`, default `log`) says so is repeated until `timeout`; any other exit is one
    line with the log's reason (`why` picks it from what the server wrote, default its last line).
    """
    errors = errors or log
    deadline = time.monotonic() + timeout
    while True:
        offset = errors.stat().st_size if errors.exists() else 0
        proc = start(pids, name, argv, log, **options)
        outcome = _wait(proc, ready, deadline, interval)
        if outcome == "ready":
            return proc
        if outcome == "mute":
            raise BadInput(f"{what} did not answer within {timeout:g} s (log: {errors})")
        written = _since(errors, offset)
        if not PORT_TAKEN.search(written) or time.monotonic() + RESTART_AFTER >= deadline:
            pid_file(pids, name).unlink(missing_ok=True)
            raise BadInput(f"{what} exited at start: {(why or last_line)(written)} (log: {errors})")
        time.sleep(RESTART_AFTER)


def _wait(proc: Proc, ready: Callable[[], bool], deadline: float, interval: float) -> str:
    """"ready", "exited" or "mute" (still running at the deadline without answering)."""
    while time.monotonic() < deadline:
        if not proc.alive():
            break
        if ready():
            return "ready"
        time.sleep(interval)
    if proc.alive():
        return "mute"
    _reap(proc.pid)
    return "exited"


def _since(log: Path, offset: int) -> str:
    """What the server wrote to `log` after `offset`."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def last_line(text: str, skip: tuple[str, ...] = ()) -> str:
    """The last non-blank line a server wrote, leaving out lines that start with `skip`."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(skip)]
    return lines[-1] if lines else "(no output)"


def stop(pids: Path, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
    """Signal our process, wait for it to go, SIGKILL it after `timeout`; then forget its PID."""
    if proc.alive():
        os.kill(proc.pid, sig)
        deadline = time.monotonic() + timeout
        while proc.alive() and time.monotonic() < deadline:
            _reap(proc.pid)
            time.sleep(0.05)
        if proc.alive():
            os.kill(proc.pid, signal.SIGKILL)
            while proc.alive():
                _reap(proc.pid)
                time.sleep(0.05)
    pid_file(pids, proc.name).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
