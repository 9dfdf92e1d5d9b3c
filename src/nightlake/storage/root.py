"""root:// storage through the in-process XRootD Python client (never the xrdcp/xrdfs CLI, which
sometimes stalls 5 s at exit).

XRootD 5.5.3: `File.open(DELETE|MAKEPATH)` creates parents and truncates; `query(CHECKSUM)` answers
`adler32 <8 hex>`; `mv` silently replaces an existing target (hence the check in `put`); a missing
path is error response 400 with errno 3011 (kXR_NotFound).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from nightlake.storage import CHUNK, Stat, TwoPhaseStorage
from nightlake.storage.adler import Adler32Counter

_NOT_FOUND = 3011  # kXR_NotFound


class XRootDError(Exception):
    """A failed XRootD call; `status` is the `XRootDStatus`, which `failures.classify` reads."""

    def __init__(self, what: str, status):
        super().__init__(f"{what}: {status.message.strip()}")
        self.status = status


def _check(what: str, status) -> None:
    if not status.ok:
        raise XRootDError(what, status)


def _not_found(status) -> bool:
    return status.errno == _NOT_FOUND


class RootStorage(TwoPhaseStorage):
    """One `FileSystem` per server, shared by threads (XrdCl multiplexes one connection)."""

    scheme = "root"

    def __init__(self, timeout: int = 120, checksum_slots: int = 4):
        super().__init__(checksum_slots)
        self._timeout = timeout
        self._filesystems: dict[str, object] = {}
        self._lock = threading.Lock()

    def _fs(self, pfn: str) -> tuple[object, str]:
        """(FileSystem of the pfn's server, path on it); "root://h:p//rucio/x" → "/rucio/x"."""
        from XRootD import client

        parts = urlsplit(pfn)
        server = f"{parts.scheme}://{parts.netloc}"
        path = "/" + parts.path.lstrip("/")
        with self._lock:
            fs = self._filesystems.get(server)
            if fs is None:
                fs = self._filesystems[server] = client.FileSystem(server)
        return fs, path

    def _send(self, pfn: str, body: Adler32Counter, size: int) -> None:
        from XRootD import client
        from XRootD.client import flags

        f = client.File()
        status, _ = f.open(pfn, flags.OpenFlags.DELETE | flags.OpenFlags.MAKEPATH, timeout=self._timeout)
        _check(f"open {pfn}", status)
        try:
            offset = 0
            for chunk in body:
                status, _ = f.write(chunk, offset, timeout=self._timeout)
                _check(f"write {pfn} at {offset}", status)
                offset += len(chunk)
        finally:
            status, _ = f.close(timeout=self._timeout)
        _check(f"close {pfn}", status)

    def _checksum(self, pfn: str) -> str | None:
        from XRootD.client import flags

        fs, path = self._fs(pfn)
        with self._checksum_slots:
            status, answer = fs.query(flags.QueryCode.CHECKSUM, path, timeout=self._timeout)
        _check(f"checksum {pfn}", status)
        return _parse_checksum(answer)

    def _rename(self, src: str, dst: str) -> None:
        fs, src_path = self._fs(src)
        status, _ = fs.mv(src_path, self._fs(dst)[1], timeout=self._timeout)
        _check(f"mv {src} {dst}", status)

    def stat(self, pfn: str) -> Stat | None:
        fs, path = self._fs(pfn)
        status, info = fs.stat(path, timeout=self._timeout)
        if _not_found(status):
            return None
        _check(f"stat {pfn}", status)
        return Stat(info.size, self._checksum(pfn))

    def delete(self, pfn: str) -> None:
        fs, path = self._fs(pfn)
        status, _ = fs.rm(path, timeout=self._timeout)
        if not _not_found(status):
            _check(f"rm {pfn}", status)

    def _receive(self, pfn: str, dest: Path, ask_checksum: bool) -> tuple[Iterator[bytes], str | None]:
        from XRootD import client
        from XRootD.client import flags

        remote = self._checksum(pfn) if ask_checksum else None
        f = client.File()
        status, _ = f.open(pfn, flags.OpenFlags.READ, timeout=self._timeout)
        _check(f"open {pfn}", status)

        def chunks() -> Iterator[bytes]:
            try:
                offset = 0
                while True:
                    status, data = f.read(offset, CHUNK, timeout=self._timeout)
                    _check(f"read {pfn} at {offset}", status)
                    if not data:
                        return
                    offset += len(data)
                    yield data
            finally:
                f.close(timeout=self._timeout)

        return chunks(), remote


def _parse_checksum(answer: bytes | None) -> str | None:
    """b"adler32 8748ca9d\\x00" → "8748ca9d"; None for another algorithm or no answer."""
    if not answer:
        return None
    fields = answer.rstrip(b"\x00").decode().split()
    if len(fields) == 2 and fields[0].lower() == "adler32":
        return f"{int(fields[1], 16):08x}"
    return None
