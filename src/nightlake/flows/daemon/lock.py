"""One daemon per watched directory: an advisory lock (flock) on a hidden file in it, holding the
owner's PID. The kernel releases a flock when its process dies, even by SIGKILL, so a restart never
finds a stale lock; a second daemon finds it held and says whose it is."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from nightlake import BadInput

LOCK_NAME = ".nightlake-daemon.lock"


@contextlib.contextmanager
def watching(root: Path) -> Iterator[None]:
    """Hold the directory's lock for the block; BadInput (exit 2) naming the holder's PID if taken."""
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise BadInput(f"{root} is already watched by a nightlake daemon (PID {holder}); "
                           f"one daemon per directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
