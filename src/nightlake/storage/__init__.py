"""One small storage interface; one module per protocol (https, root, file, Rucio's plugins).

The pipeline talks to `Storage` only and never learns which protocol is behind it (house style: the
rclone lesson). Every backend shares one `put` algorithm, `TwoPhaseStorage.put`, which is where
"a half-written object is never registered" is enforced:

1. stream the bytes to `<pfn>.nightlake-part`, counting them and computing adler32 on the way;
2. check the byte count, the caller's adler32 (if given) and the storage's own adler32 of the part;
   any mismatch raises `ChecksumMismatch`;
3. rename the part to the final PFN. XRootD's MOVE / mv *overwrite* silently (XrdHttp ignores
   `Overwrite: F`), so the final name is checked first: same size and adler32 → success (a re-run),
   other content → `ExistsWithDifferentContent` (PERMANENT for `failures.classify`).

Any failure on the way (a mismatch, a transport error, a source that breaks) deletes the part.

Transport errors propagate untouched (requests exceptions, `XRootDError` carrying the
`XRootDStatus`): retrying is `RetryPolicy`'s job, never the storage layer's. Storage objects are
shared by the pipeline's worker threads and are thread-safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

from nightlake.catalog.failures import ChecksumMismatch
from nightlake.storage.adler import Adler32Counter, normalise, read_chunks

CHUNK = 8 << 20
PART_SUFFIX = ".nightlake-part"

Source = Union[Path, Callable[[], Iterable[bytes]]]
"""A local file, or a factory of a fresh chunk iterator (called again on every attempt)."""


@dataclass(frozen=True)
class Stored:
    """What is on storage after a verified put, or what a verified get wrote."""

    size: int
    adler32: str  # 8 lowercase hex


@dataclass(frozen=True)
class Stat:
    size: int
    adler32: str | None  # None when the storage cannot say


class Storage(Protocol):
    scheme: str

    def put(self, pfn: str, data: Source, *, size: int, adler32: str | None = None) -> Stored: ...
    def stat(self, pfn: str) -> Stat | None: ...
    def get(self, pfn: str, dest: Path, *, expected: Stat | None = None) -> Stored: ...
    def delete(self, pfn: str) -> None: ...
    def close(self) -> None: ...


class SizeMismatch(ChecksumMismatch):
    """The source yielded more or fewer bytes than announced; handled like a checksum mismatch."""

    def __init__(self, where: str, expected: int, actual: int):
        super().__init__(where, str(expected), str(actual))
        self.args = (f"size mismatch at {where}: expected {expected} bytes, got {actual}",)


class ExistsWithDifferentContent(Exception):
    """The final PFN already holds other bytes; never overwritten. Classifies as PERMANENT."""

    def __init__(self, pfn: str, existing: Stat, wanted: Stored):
        super().__init__(f"{pfn} exists on storage with different content: size {existing.size}, "
                         f"adler32 {existing.adler32}; wanted size {wanted.size}, adler32 {wanted.adler32}")
        self.pfn, self.existing, self.wanted = pfn, existing, wanted


def chunks_of(data: Source, chunk_size: int = CHUNK) -> Iterable[bytes]:
    """A fresh chunk iterator over `data`."""
    if isinstance(data, (str, os.PathLike)):
        return read_chunks(data, chunk_size)
    return data()


class TwoPhaseStorage:
    """The shared put/get algorithm; a backend supplies the primitives below.

    `checksum_slots` bounds concurrent server-side checksum requests. XRootD computes at most
    `xrootd.chksum max N` (default 4) checksums at once and answers the next one with a 30 s
    kXR_wait: 8 threads asking at once stalled puts by 30-90 s on the lake. Queuing them here
    costs milliseconds instead. Match it to the server's `max` (or raise both).
    """

    scheme = ""

    def __init__(self, checksum_slots: int = 4):
        self._checksum_slots = threading.BoundedSemaphore(checksum_slots)

    # --- primitives, one per protocol -----------------------------------------------------------
    def _send(self, pfn: str, body: Adler32Counter, size: int) -> None:
        """Write `body` (iterate it exactly once) to `pfn`, replacing any object there."""
        raise NotImplementedError

    def _checksum(self, pfn: str) -> str | None:
        """The storage's own adler32 of an existing object, or None if it cannot say."""
        raise NotImplementedError

    def _final_stat(self, pfn: str) -> Stat | None:
        """Stat of the final name right before the rename (`stat` unless cheaper exists)."""
        return self.stat(pfn)

    def _rename(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def _receive(self, pfn: str, dest: Path, ask_checksum: bool) -> tuple[Iterator[bytes], str | None]:
        """(chunks of the object, the adler32 the storage reports for it, or None when it cannot
        say or was not asked)."""
        raise NotImplementedError

    def stat(self, pfn: str) -> Stat | None:
        raise NotImplementedError

    def delete(self, pfn: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # --- the algorithm ------------------------------------------------------------------------------
    def put(self, pfn: str, data: Source, *, size: int, adler32: str | None = None) -> Stored:
        """Stream, verify, rename; see the module docstring. Whatever fails once the part may
        exist, the part is deleted, quietly (the failure raised is the one that matters), so a
        failed upload leaves no dark data behind."""
        part = pfn + PART_SUFFIX
        try:
            stored = self._send_verified(pfn, part, data, size, adler32)
            existing = self._final_stat(pfn)
            if existing is None:
                self._rename(part, pfn)
                return stored
        except Exception:
            self._discard(part)
            raise
        self.delete(part)
        if existing.size == stored.size and existing.adler32 == stored.adler32:
            return stored  # an earlier run already stored exactly these bytes
        raise ExistsWithDifferentContent(pfn, existing, stored)

    def _send_verified(self, pfn: str, part: str, data: Source, size: int, adler32: str | None) -> Stored:
        """Steps 1 and 2: the bytes at `part`, their count and adler32 checked three ways."""
        def wrong_size(actual: int) -> None:
            raise SizeMismatch(f"source for {pfn}", size, actual)

        body = Adler32Counter(chunks_of(data), limit=size, on_wrong_size=wrong_size)
        self._send(part, body, size)
        stored = Stored(body.size, body.adler32)
        if adler32 is not None and normalise(adler32) != stored.adler32:
            raise ChecksumMismatch(f"source for {pfn}", normalise(adler32), stored.adler32)
        remote = self._checksum(part)
        if remote is not None and remote != stored.adler32:
            raise ChecksumMismatch(f"{part} on storage", stored.adler32, remote)
        return stored

    def _discard(self, part: str) -> None:
        with contextlib.suppress(Exception):
            self.delete(part)

    def get(self, pfn: str, dest: Path, *, expected: Stat | None = None) -> Stored:
        """Stream `pfn` to `dest` (via a temporary name); only verified bytes reach `dest`.

        With `expected` (the catalog's size and adler32), the bytes received are checked against
        it, end to end, and the storage is not asked: its digest could only repeat what the
        comparison already proves, and XRootD computes it by reading the whole object again
        before it sends the first byte (0.7 s per GB). Without an adler32 to expect, the
        storage's own is the check."""
        dest = Path(dest)
        if not dest.parent.is_dir():  # one stat, not mkdir's failed syscall, per file of a directory
            dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + PART_SUFFIX)
        want = normalise(expected.adler32) if expected and expected.adler32 else None
        try:
            chunks, remote = self._receive(pfn, dest, ask_checksum=want is None)
            counter = Adler32Counter(chunks)
            with open(part, "wb") as f:
                for chunk in counter:
                    f.write(chunk)
            _check_received(pfn, counter, want or remote, expected)
            os.replace(part, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise
        return Stored(counter.size, counter.adler32)


def _check_received(pfn: str, counter: Adler32Counter, adler32: str | None, expected: Stat | None) -> None:
    if expected is not None and counter.size != expected.size:
        raise SizeMismatch(f"download of {pfn}", expected.size, counter.size)
    if adler32 is not None and adler32 != counter.adler32:
        raise ChecksumMismatch(f"download of {pfn}", adler32, counter.adler32)


def open_storage(protocol: dict, *, ca_cert: str | bool = True, client_cert: str | None = None,
                 token: Callable[[], str] | None = None, pool_size: int = 8, timeout: float = 120.0, checksum_slots: int = 4,
                 rse_info: dict | None = None) -> Storage:
    """A `Storage` for one entry of an RSE's `protocols` list (scheme, hostname, port, prefix, impl).

    `ca_cert`: CA bundle/dir to verify servers (True = system trust; never False by default).
    `client_cert`: a PEM with certificate and key (an X509 proxy) to present, or None.
    `token`: gives the current bearer token to present over https (`storage.credentials`), or None.
    `timeout`: seconds without progress before a call fails (a transient error for the policy).
    `checksum_slots`: concurrent server checksum requests (see `TwoPhaseStorage`).
    `rse_info` (the RSE's full `get_rse_info`) is only used by the Rucio-plugin fallback.
    """
    scheme = protocol["scheme"]
    if scheme in ("https", "davs"):
        from nightlake.storage.https import HttpsStorage
        return HttpsStorage(ca_cert=ca_cert, client_cert=client_cert, token=token, pool_size=pool_size,
                            timeout=(10.0, timeout), checksum_slots=checksum_slots)
    if scheme == "root":
        from nightlake.storage.root import RootStorage
        return RootStorage(timeout=int(timeout), checksum_slots=checksum_slots)
    if scheme == "file":
        from nightlake.storage.file import FileStorage
        return FileStorage(checksum_slots)
    from nightlake.storage.rucio_plugin import RucioPluginStorage
    return RucioPluginStorage(protocol, rse_info=rse_info, checksum_slots=checksum_slots)


def pfns(rse_info: dict, scheme: str, dids: list[dict], operation: str = "write") -> dict[str, str]:
    """PFNs ("scope:name" → pfn) as Rucio's own lfn2pfn computes them for this RSE and scheme, so the
    stock `rucio download` finds the files where nightlake put them."""
    from rucio.rse import rsemanager

    return rsemanager.lfns2pfns(rse_info, [{"scope": d["scope"], "name": d["name"]} for d in dids],
                                operation=operation, scheme=scheme)
