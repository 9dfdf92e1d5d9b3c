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

A GET goes through urllib3 directly, on a pool of its own with the same TLS settings: requests'
session machinery (request preparation, cookies, hooks, the CA path checked on every send) costs
0.25 ms of CPU per GET, as much as the GET itself, and a retrieve of small files is bound by the
client's CPU (measured: 0.50 vs 0.23 ms per 4 kB GET). Its errors are raised as requests' own,
so they classify the same.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
import urllib3
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
                 token: Callable[[], str] | None = None, pool_size: int = 8,
                 timeout: tuple[float, float] = (10.0, 120.0), checksum_slots: int = 4):
        super().__init__(checksum_slots)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would silently override `verify`
        session.verify = ca_cert
        session.cert = client_cert
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._session, self._timeout, self._token = session, timeout, token
        self._gets = urllib3.PoolManager(num_pools=4, maxsize=pool_size, retries=False,
                                         timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                                         **_tls(ca_cert, client_cert))

    def _bearer(self, headers: dict[str, str] | None) -> dict[str, str]:
        """The request's headers with the current bearer token (re-read when its file was renewed)."""
        if self._token is None:
            return headers or {}
        return {**(headers or {}), "Authorization": f"Bearer {self._token()}"}

    def _request(self, method: str, pfn: str, headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
        return self._session.request(method, _url(pfn), headers=self._bearer(headers), timeout=self._timeout,
                                     **kwargs)

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
                response = self._get(pfn, WANT_DIGEST)
        else:
            response = self._get(pfn, {})

        def chunks() -> Iterator[bytes]:
            try:
                with _as_requests_errors():
                    yield from response.stream(CHUNK)
            finally:
                response.release_conn()

        # XrdHttp may send a Digest unasked; only an answer to our Want-Digest is the storage's word.
        return chunks(), _digest(response) if ask_checksum else None

    def _get(self, pfn: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        url = _url(pfn)
        with _as_requests_errors():
            response = self._gets.request("GET", url, headers=self._bearer(headers), preload_content=False,
                                          redirect=False)
        if response.status >= 400:
            response.drain_conn()
            failed = requests.Response()
            failed.status_code, failed.reason, failed.url = response.status, response.reason, url
            failed.raise_for_status()
        return response

    def close(self) -> None:
        self._session.close()
        self._gets.clear()


def _tls(ca_cert: str | bool, client_cert: str | None) -> dict:
    """urllib3's names for what requests calls `verify` and `cert` (a CA file or directory, or
    True for the system trust store; never unverified)."""
    tls: dict = {"cert_reqs": "CERT_REQUIRED", "cert_file": client_cert}
    if isinstance(ca_cert, str):
        tls["ca_cert_dir" if os.path.isdir(ca_cert) else "ca_certs"] = ca_cert
    return tls


@contextlib.contextmanager
def _as_requests_errors() -> Iterator[None]:
    """urllib3's transport errors as the requests exceptions `failures.classify` knows."""
    try:
        yield
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(str(exc)) from exc
    except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:  # refused: a timeout kind
        raise requests.exceptions.ConnectionError(str(exc)) from exc


def _url(pfn: str) -> str:
    """davs:// is WebDAV over https; requests only speaks https."""
    return "https://" + pfn[len("davs://"):] if pfn.startswith("davs://") else pfn


def _origin(pfn: str) -> str:
    parts = urlsplit(_url(pfn))
    return f"{parts.scheme}://{parts.netloc}/"


def _digest(response: requests.Response) -> str | None:
    match = _DIGEST.search(response.headers.get("Digest", ""))
    return f"{int(match.group(1), 16):08x}" if match else None
