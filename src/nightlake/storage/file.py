"""file:// storage on a local (or mounted) POSIX file system: write, fsync, rename.

The adler32 of a fresh part is the one computed while writing (after fsync there is nothing more
the file system could tell); `stat` reads the file back to compute it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from nightlake.storage import CHUNK, Stat, TwoPhaseStorage
from nightlake.storage.adler import Adler32Counter, file_adler32, read_chunks


def path_of(pfn: str) -> Path:
    """file:///a/b → /a/b (a bare path is accepted too)."""
    return Path(unquote(urlsplit(pfn).path)) if pfn.startswith("file:") else Path(pfn)


class FileStorage(TwoPhaseStorage):
    scheme = "file"

    def _send(self, pfn: str, body: Adler32Counter, size: int) -> None:
        path = path_of(pfn)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for chunk in body:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())

    def _checksum(self, pfn: str) -> str | None:
        return None  # trust the adler32 computed while writing

    def _rename(self, src: str, dst: str) -> None:
        os.replace(path_of(src), path_of(dst))

    def stat(self, pfn: str) -> Stat | None:
        path = path_of(pfn)
        if not path.exists():
            return None
        size, adler32 = file_adler32(path)
        return Stat(size, adler32)

    def delete(self, pfn: str) -> None:
        path_of(pfn).unlink(missing_ok=True)

    def _receive(self, pfn: str, dest: Path, ask_checksum: bool) -> tuple[Iterator[bytes], str | None]:
        return read_chunks(path_of(pfn), CHUNK), None
