"""What is ready to ingest in the watched directory: each `<file>.trigger` (the ACADA convention,
a symlink to the data file in practice) says that `<file>` is complete, and `<dataset>.end`
says that an observation is over.

Discovery is a rescan of the tree: it finds what appeared while the daemon was down as well as
what appears now, and needs nothing from the writer but the trigger. The `invalid/` tree and
hidden entries (the lock file) are never scanned. A trigger whose data file is missing or not a
regular file is refused (reported once, never ingested).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TRIGGER = ".trigger"
END_OF_OBSERVATION = ".end"
INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Trigger:
    path: Path  # the trigger file
    data: Path  # the file it says is ready
    at: float  # when the trigger appeared (its own mtime, not its target's): latency counts from here


@dataclass
class Scan:
    """One rescan: the triggers (data file ready or refused) and end-of-observation markers."""

    ready: list[Trigger]
    refused: list[tuple[Path, str]]
    ended: dict[str, tuple[Path, float]]  # dataset name -> its marker, and when it appeared


def scan(root: Path) -> Scan:
    """Walk `root` once (os.scandir, one lstat per trigger)."""
    found = Scan([], [], {})
    for entry in _entries(root):
        if entry.name.endswith(END_OF_OBSERVATION):
            found.ended[entry.name[:-len(END_OF_OBSERVATION)]] = (Path(entry.path),
                                                                  entry.stat(follow_symlinks=False).st_mtime)
        elif entry.name.endswith(TRIGGER):
            trigger, data = Path(entry.path), Path(entry.path[:-len(TRIGGER)])
            if (problem := _not_ready(data)) is not None:
                found.refused.append((trigger, problem))
            else:
                found.ready.append(Trigger(trigger, data, entry.stat(follow_symlinks=False).st_mtime))
    found.ready.sort(key=lambda t: t.at)
    return found


def _entries(root: Path) -> Iterator[os.DirEntry]:
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or (directory == root and entry.name == INVALID):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        yield entry
        except FileNotFoundError:  # removed while walked: nothing of it is ready
            continue


def _not_ready(data: Path) -> str | None:
    try:
        info = data.lstat()
    except FileNotFoundError:
        return "its data file does not exist"
    if not stat.S_ISREG(info.st_mode):
        return "its data file is not a regular file"
    return None


def set_aside(root: Path, data: Path) -> Path:
    """Move a bad file to `root/invalid/<its path>` (same file system: a rename) and return where."""
    target = root / INVALID / data.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(data, target)
    return target


def remove(path: Path) -> None:
    """Remove a trigger or a marker; one already gone is what we wanted."""
    path.unlink(missing_ok=True)
