"""The `error` fault's file system: the RSE's storage directory as it is, except that a share of the
files opened or created fail with EIO, so that XRootD itself answers those requests with
`HTTP 500` (`Unable to open ...; input/output error`), as the 2020 data challenge's storage did.

Why a file system: XRootD 5.5.3 has no knob that fails a share of requests, and an I/O error in
the middle of a transfer does not give a 500 (a GET already answered 200 is cut short, a PUT is
dropped after `100 Continue`); only an open or a create that fails does. Run by Debian's
`/usr/bin/python3` with `python3-fusepy` (libfuse2), as root, mounted over the storage directory
with `allow_other` and `default_permissions` (the kernel checks each caller's permissions as the
directory below would). The tree below is reached through a descriptor opened before the mount,
so the mount hides nothing from this process. What a caller creates is given to that caller, so
the tree is as XRootD would have left it once the fault is cleared.

Each open or create fails with probability `--share` (random per request: a retry may pass, as
with a storage under stress). Started and stopped by `lake/faults.py`.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import random
import sys

from fusepy import FUSE, FuseOSError, Operations, fuse_get_context

STAT_FIELDS = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
STATVFS_FIELDS = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                  "f_frsize", "f_namemax")


def _errors(method):
    """An OSError of the tree below is the caller's error, with its errno."""
    @functools.wraps(method)
    def call(self, *args):
        try:
            return method(self, *args)
        except OSError as error:
            raise FuseOSError(error.errno or errno.EIO) from None
    return call


class Flaky(Operations):
    """Passthrough to the directory `below` (a descriptor), EIO on a share of opens and creates."""

    def __init__(self, below: int, share: float) -> None:
        self.below, self.share = below, share

    @staticmethod
    def _rel(path: str) -> str:
        return path.lstrip("/") or "."

    def _fail_some(self) -> None:
        if random.random() < self.share:
            raise FuseOSError(errno.EIO)

    def _give(self, path: str) -> None:
        uid, gid, _ = fuse_get_context()
        os.chown(self._rel(path), uid, gid, dir_fd=self.below, follow_symlinks=False)

    @_errors
    def getattr(self, path, fh=None):
        st = os.stat(self._rel(path), dir_fd=self.below, follow_symlinks=False)
        return {name: getattr(st, name) for name in STAT_FIELDS}

    @_errors
    def readdir(self, path, fh):
        fd = os.open(self._rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.below)
        try:
            return [".", "..", *os.listdir(fd)]
        finally:
            os.close(fd)

    @_errors
    def open(self, path, flags):
        self._fail_some()
        return os.open(self._rel(path), flags, dir_fd=self.below)

    @_errors
    def create(self, path, mode, fi=None):
        self._fail_some()
        fd = os.open(self._rel(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, dir_fd=self.below)
        self._give(path)
        return fd

    @_errors
    def mkdir(self, path, mode):
        os.mkdir(self._rel(path), mode, dir_fd=self.below)
        self._give(path)

    @_errors
    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    @_errors
    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    @_errors
    def truncate(self, path, length, fh=None):
        if fh is not None:
            return os.ftruncate(fh, length)
        fd = os.open(self._rel(path), os.O_WRONLY, dir_fd=self.below)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)

    @_errors
    def flush(self, path, fh):
        return None

    @_errors
    def fsync(self, path, datasync, fh):
        return os.fdatasync(fh) if datasync else os.fsync(fh)

    @_errors
    def release(self, path, fh):
        return os.close(fh)

    @_errors
    def unlink(self, path):
        return os.unlink(self._rel(path), dir_fd=self.below)

    @_errors
    def rmdir(self, path):
        return os.rmdir(self._rel(path), dir_fd=self.below)

    @_errors
    def rename(self, old, new):
        return os.rename(self._rel(old), self._rel(new), src_dir_fd=self.below, dst_dir_fd=self.below)

    @_errors
    def chmod(self, path, mode):
        return os.chmod(self._rel(path), mode, dir_fd=self.below)

    @_errors
    def chown(self, path, uid, gid):
        return os.chown(self._rel(path), uid, gid, dir_fd=self.below, follow_symlinks=False)

    @_errors
    def utimens(self, path, times=None):
        return os.utime(self._rel(path), times, dir_fd=self.below)

    @_errors
    def statfs(self, path):
        st = os.statvfs(self.below)
        return {name: getattr(st, name) for name in STATVFS_FIELDS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", help="the storage directory, mounted over")
    parser.add_argument("--share", type=float, default=0.5, help="share of opens and creates failed with EIO [0.5]")
    args = parser.parse_args(argv)
    below = os.open(args.directory, os.O_RDONLY | os.O_DIRECTORY)
    FUSE(Flaky(below, args.share), args.directory, foreground=True, allow_other=True, default_permissions=True,
         nonempty=True, fsname="nightlake-error-fault")


if __name__ == "__main__":
    sys.exit(main())
