"""Any other scheme, through Rucio's own protocol plugins (`rucio.rse.protocols.*`, as
`rucio.rse.rsemanager` would pick them): gfal, ssh, posix, webdav for davs, ...

Slower and coarser than the native modules: the plugins move whole local files, so a streamed
payload is spooled to a temporary local file first, and not every plugin reports adler32 (webdav's
`stat` gives the size only). The put algorithm is the same verified two-phase one.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from nightlake.storage import CHUNK, Stat, TwoPhaseStorage
from nightlake.storage.adler import Adler32Counter, read_chunks

_MINIMAL_RSE = {"rse": "NIGHTLAKE-FALLBACK", "id": "", "deterministic": True, "volatile": False,
                "lfn2pfn_algorithm": "hash", "domain": ["wan"], "protocols": []}


class RucioPluginStorage(TwoPhaseStorage):
    """One plugin instance per thread: the plugins keep connections and state unguarded."""

    def __init__(self, protocol: dict, *, rse_info: dict | None = None, checksum_slots: int = 4):
        super().__init__(checksum_slots)
        self.scheme = protocol["scheme"]
        self._protocol = dict(protocol)
        self._rse = rse_info or dict(_MINIMAL_RSE, protocols=[self._protocol])
        self._local = threading.local()
        self._all: list[object] = []
        self._lock = threading.Lock()

    def _plugin(self):
        plugin = getattr(self._local, "plugin", None)
        if plugin is None:
            module, _, cls = self._protocol["impl"].rpartition(".")
            plugin = getattr(importlib.import_module(module), cls)(
                dict(self._protocol, auth_token=None), self._rse)
            plugin.connect()
            self._local.plugin = plugin
            with self._lock:
                self._all.append(plugin)
        return plugin

    def _send(self, pfn: str, body: Adler32Counter, size: int) -> None:
        fd, spool = tempfile.mkstemp(prefix="nightlake-spool-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in body:
                    f.write(chunk)
            self._plugin().put(spool, pfn, source_dir=None)
        finally:
            os.unlink(spool)

    def _checksum(self, pfn: str) -> str | None:
        return self._stat_dict(pfn).get("adler32")

    def _stat_dict(self, pfn: str) -> dict:
        with self._checksum_slots:
            info = self._plugin().stat(pfn)
        if info.get("adler32"):
            info["adler32"] = f"{int(info['adler32'], 16):08x}"
        return info

    def _rename(self, src: str, dst: str) -> None:
        self._plugin().rename(src, dst)

    def stat(self, pfn: str) -> Stat | None:
        if not self._plugin().exists(pfn):
            return None
        info = self._stat_dict(pfn)
        return Stat(int(info["filesize"]), info.get("adler32"))

    def delete(self, pfn: str) -> None:
        from rucio.common.exception import SourceNotFound

        with contextlib.suppress(SourceNotFound):
            if self._plugin().exists(pfn):
                self._plugin().delete(pfn)

    def _receive(self, pfn: str, dest: Path, ask_checksum: bool) -> tuple[Iterator[bytes], str | None]:
        spool_dir = Path(tempfile.mkdtemp(prefix="nightlake-get-", dir=dest.parent))
        spool = spool_dir / "data"
        self._plugin().get(pfn, str(spool))
        remote = self._checksum(pfn) if ask_checksum else None

        def chunks() -> Iterator[bytes]:
            try:
                yield from read_chunks(spool, CHUNK)
            finally:
                shutil.rmtree(spool_dir, ignore_errors=True)

        return chunks(), remote

    def close(self) -> None:
        with self._lock:
            for plugin in self._all:
                with contextlib.suppress(Exception):
                    plugin.close()
            self._all.clear()
