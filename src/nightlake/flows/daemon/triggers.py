"""What is ready to ingest in the watched directory: each `<file>.trigger` (the ACADA convention,
a symlink to the data file in practice) says that `<file>` is complete, and `<dataset>.end`
says that an observation is over.

Discovery is a rescan of the tree: it finds what appeared while the daemon was down as well as
what appears now, and needs nothing from the writer but the trigger. With `Watcher` (inotify,
the optional `inotify_simple`), a trigger is also seen the moment it is created, so the rescan is
only the fallback. The `invalid/` tree and hidden entries (the lock file) are never scanned. A
trigger whose data file is missing or not a regular file is refused (reported once, never ingested).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
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
    return look(Path(entry.path) for entry in _entries(root) if entry.name.endswith((TRIGGER, END_OF_OBSERVATION)))


def look(paths: Iterable[Path]) -> Scan:
    """These triggers and markers (as a rescan or inotify found them), each one lstat."""
    found = Scan([], [], {})
    for path in paths:
        try:
            at = path.lstat().st_mtime
        except FileNotFoundError:  # consumed meanwhile
            continue
        if path.name.endswith(END_OF_OBSERVATION):
            found.ended[path.name[:-len(END_OF_OBSERVATION)]] = (path, at)
        else:
            data = path.with_name(path.name[:-len(TRIGGER)])
            if (problem := _not_ready(data)) is not None:
                found.refused.append((path, problem))
            else:
                found.ready.append(Trigger(path, data, at))
    found.ready.sort(key=lambda t: t.at)
    return found


class Watcher:
    """inotify on the tree: the triggers and markers created (or moved) in it, each directory
    watched as it appears and looked into at once (its first files may predate its watch)."""

    def __init__(self, root: Path):
        from inotify_simple import INotify, flags

        self._flags, self._inotify, self._dirs, self._root = flags, INotify(), {}, root
        self._early = self._add(root)

    def _add(self, directory: Path) -> list[Path]:
        """Watch `directory` and the directories below it; the triggers already there. (One
        created in a sub-directory between the walk and its watch is left to the rescan.)"""
        mask = self._flags.CREATE | self._flags.MOVED_TO
        self._dirs[self._inotify.add_watch(directory, mask)] = directory
        below: list[Path] = []
        found = [Path(e.path) for e in _entries(directory, self._root, below)
                 if e.name.endswith((TRIGGER, END_OF_OBSERVATION))]
        for sub in below:
            self._dirs[self._inotify.add_watch(sub, mask)] = sub
        return found

    def ready(self, timeout_s: float) -> list[Path]:
        """Triggers and markers that appeared, waiting up to `timeout_s` for the first."""
        found, self._early = self._early, []
        for event in self._inotify.read(timeout=int(timeout_s * 1000)):
            parent = self._dirs.get(event.wd)
            if parent is None or event.name.startswith(".") or (parent == self._root and event.name == INVALID):
                continue
            if event.mask & self._flags.ISDIR:
                found += self._add(parent / event.name)
            elif event.name.endswith((TRIGGER, END_OF_OBSERVATION)):
                found.append(parent / event.name)
        return found

    def close(self) -> None:
        self._inotify.close()


def _entries(top: Path, root: Path | None = None, dirs: list[Path] | None = None) -> Iterator[os.DirEntry]:
    """The files under `top` (in the tree of `root`, whose invalid/ is left out); the directories
    walked are added to `dirs` when given."""
    root, stack = root or top, [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or (directory == root and entry.name == INVALID):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                        if dirs is not None:
                            dirs.append(Path(entry.path))
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
