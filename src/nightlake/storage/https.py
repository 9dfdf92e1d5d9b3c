"""https (WebDAV) storage, as served by XrdHttp (XRootD 5.5.3) and other WebDAV servers.

What XrdHttp 5.5.3 does (checked against the lake, see tests/test_storage_lake.py):
- PUT creates missing parent directories and answers 200 with no `Digest`, even with `Want-Digest`;
- HEAD and GET with `Want-Digest: adler32` answer `Digest: adler32=<8 hex>`;
- MOVE works (201) and creates parents, but **ignores `Overwrite: F`** and replaces the target;
- any 404 answer carries `Connection: Close`, so a HEAD on a missing name costs a new TLS
  connection (about 3 ms here). The check "does the final name exist?" therefore lists the parent
  directory (PROPFIND Depth 1, 207 keep-alive; the part file guarantees it exists) and only HEADs
  the final name when it is listed.
So a put is four keep-alive requests: PUT part, HEAD part (Digest), PROPFIND parent, MOVE.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from nightlake.storage import CHUNK, Stat, TwoPhaseStorage
from nightlake.storage.adler import Adler32Counter

_DIGEST = re.compile(r"adler32=([0-9a-fA-F]{1,8})")
_HREF = re.compile(r"<(?:\w+:)?href>([^<]*)</(?:\w+:)?href>", re.I)
WANT_DIGEST = {"Want-Digest": "adler32"}


class HttpsStorage(TwoPhaseStorage):
    """One pooled, keep-alive `requests.Session`, shared by all threads (urllib3's pool is thread-safe)."""

    scheme = "https"

    def __init__(self, *, ca_cert: str | bool = True, client_cert: str | None = None,
                 pool_size: int = 8, timeout: tuple[float, float] = (10.0, 120.0),
                 checksum_slots: int = 4):
        super().__init__(checksum_slots)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would silently override `verify`
        session.verify = ca_cert
        session.cert = client_cert
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._session, self._timeout = session, timeout

    def _request(self, method: str, pfn: str, **kwargs) -> requests.Response:
        return self._session.request(method, _url(pfn), timeout=self._timeout, **kwargs)

    def _send(self, pfn: str, body: Adler32Counter, size: int) -> None:
        # `body` has __len__, so requests sends Content-Length, not chunked encoding.
        self._request("PUT", pfn, data=body).raise_for_status()

    def _checksum(self, pfn: str) -> str | None:
        with self._checksum_slots:
            response = self._request("HEAD", pfn, headers=WANT_DIGEST)
        if response.status_code == 404:
            # The part we just wrote is gone: an earlier, timed-out attempt of this put finished
            # late and moved it. Transient: the retry writes a fresh part.
            raise ConnectionError(f"{pfn} vanished right after it was written")
        response.raise_for_status()
        return _digest(response)

    def _final_stat(self, pfn: str) -> Stat | None:
        parent, name = posixpath.split(urlsplit(_url(pfn)).path)
        response = self._request("PROPFIND", posixpath.join(_origin(pfn), parent.lstrip("/")) + "/",
                                 headers={"Depth": "1"})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        names = {posixpath.basename(unquote(href).rstrip("/")) for href in _HREF.findall(response.text)}
        return self.stat(pfn) if name in names else None

    def _rename(self, src: str, dst: str) -> None:
        headers = {"Destination": _url(dst), "Overwrite": "F"}
        self._request("MOVE", src, headers=headers).raise_for_status()

    def stat(self, pfn: str) -> Stat | None:
        with self._checksum_slots:
            response = self._request("HEAD", pfn, headers=WANT_DIGEST)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return Stat(int(response.headers["Content-Length"]), _digest(response))

    def delete(self, pfn: str) -> None:
        response = self._request("DELETE", pfn)
        if response.status_code != 404:
            response.raise_for_status()

    def _receive(self, pfn: str, dest: Path, ask_checksum: bool) -> tuple[Iterator[bytes], str | None]:
        if ask_checksum:
            with self._checksum_slots:  # the Digest is computed before the body is sent
                response = self._request("GET", pfn, headers=WANT_DIGEST, stream=True)
        else:
            response = self._request("GET", pfn, stream=True)
        response.raise_for_status()

        def chunks() -> Iterator[bytes]:
            with response:
                yield from response.iter_content(CHUNK)

        # XrdHttp may send a Digest unasked; only an answer to our Want-Digest is the storage's word.
        return chunks(), _digest(response) if ask_checksum else None

    def close(self) -> None:
        self._session.close()


def _url(pfn: str) -> str:
    """davs:// is WebDAV over https; requests only speaks https."""
    return "https://" + pfn[len("davs://"):] if pfn.startswith("davs://") else pfn


def _origin(pfn: str) -> str:
    parts = urlsplit(_url(pfn))
    return f"{parts.scheme}://{parts.netloc}/"


def _digest(response: requests.Response) -> str | None:
    match = _DIGEST.search(response.headers.get("Digest", ""))
    return f"{int(match.group(1), 16):08x}" if match else None
