"""Error classification: errors are data.

Every failure that reaches the journal, the event log or the retry policy is first turned into a
`Classified(error_class, message)`. The class decides what happens next, in one place:

- `TRANSIENT_STORAGE` / `TRANSIENT_CATALOG`: worth retrying after a back-off (per RSE / per catalog);
- `AUTH`: retrying cannot help and every other file will fail the same way, so the run stops early;
- `PERMANENT`: this file (or batch) fails; the others go on.

The original message is always kept, because "errors are data": the report groups them later.

Transport errors (connection refused, timeouts, HTTP 5xx) carry no hint of *who* was talking; Rucio
itself raises `ServiceUnavailable` both for its server and for storage reached through its protocol
plugins. So `classify(exc, catalog=True)` attributes them to the catalog; the default is storage.

`replication_error_group(message)` is a second, coarser view for `rules watch`: FTS/dCache transfer
errors grouped by cause, with the patterns kept as data in `REPLICATION_ERROR_GROUPS`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import requests
from rucio.common import exception as rucio_exc


class ErrorClass(enum.Enum):
    TRANSIENT_STORAGE = "transient_storage"
    TRANSIENT_CATALOG = "transient_catalog"
    AUTH = "auth"
    PERMANENT = "permanent"

    @property
    def transient(self) -> bool:
        return self in (ErrorClass.TRANSIENT_STORAGE, ErrorClass.TRANSIENT_CATALOG)


@dataclass(frozen=True)
class Classified:
    error_class: ErrorClass
    message: str


class ChecksumMismatch(Exception):
    """The bytes on storage do not match the source's adler32.

    It classifies as PERMANENT; the retry policy gives it a budget of its own (one re-upload by
    default, see `retry.RetryPolicy.checksum_retries`) because corruption in flight can happen
    once, while a mismatch twice in a row means the source or the storage is broken.
    """

    def __init__(self, where: str, expected: str, actual: str):
        super().__init__(f"adler32 mismatch at {where}: expected {expected}, got {actual}")
        self.where, self.expected, self.actual = where, expected, actual


T_STORAGE, T_CATALOG = ErrorClass.TRANSIENT_STORAGE, ErrorClass.TRANSIENT_CATALOG
AUTH, PERMANENT = ErrorClass.AUTH, ErrorClass.PERMANENT
_TRANSPORT = object()  # placeholder: "transient on whichever side the caller talked to"

# Rucio exception types by class; first match wins. Unlisted types fall back to the message.
_RUCIO: tuple[tuple[tuple[type[Exception], ...], object], ...] = (
    ((rucio_exc.CannotAuthenticate, rucio_exc.CannotAuthorize, rucio_exc.AccessDenied,
      rucio_exc.NoAuthInformation, rucio_exc.ErrorLoadingCredentials, rucio_exc.ScopeAccessDenied,
      rucio_exc.RSEAccessDenied, rucio_exc.SourceAccessDenied), AUTH),
    ((rucio_exc.DatabaseException, rucio_exc.ReplicationRuleCreationTemporaryFailed), T_CATALOG),
    ((rucio_exc.ServiceUnavailable, rucio_exc.ServerConnectionException,
      rucio_exc.ResourceTemporaryUnavailable), _TRANSPORT),
    ((rucio_exc.RSENotConnected, rucio_exc.DestinationNotAccessible), T_STORAGE),
)

_HTTP_AUTH = r"(HTTP|status code:?)\s*40[13]\b|\b40[13]\s*(Unauthori[sz]ed|Forbidden)"

# Message patterns for errors whose type says nothing (FTS/dCache text, generic RucioException).
_MESSAGE_PATTERNS: tuple[tuple[re.Pattern[str], object], ...] = (
    (re.compile(r"(token|proxy).{0,20}expired|" + _HTTP_AUTH, re.I), AUTH),
    (re.compile(r"No write pools online|OutOfDirectMemoryError|Copy failed with mode streamed", re.I),
     T_STORAGE),
    (re.compile(r"http status code: 5\d\d|HTTP 50[0-4]\b|\b50[234] (Bad Gateway|Service Unavailable"
                r"|Gateway Time-?out)", re.I), _TRANSPORT),
)

# XRootD answers a path it refuses with kXR_NotAuthorized (3010; 403 over https), like a refused
# credential: these messages say it is the path, so that file fails alone (PERMANENT), not the run.
_BAD_PATH = re.compile(r"relative path\b.{0,500}\bdisallowed|\b(invalid|illegal|disallowed) (path|file ?name)\b",
                       re.I)

# XRootD: client-side status codes, then server errnos (kXR_* in XProtocol.hh) carried by code 400:
# 3005 FSError, 3009 NoSpace, 3012 ServerError, 3024 Overloaded ... are worth a back-off.
_XRD_CLIENT_TRANSIENT = {1, 5, 102, 103, 104, 105, 107, 108, 109, 202, 206, 207, 208}
_XRD_CLIENT_AUTH = {203, 204}
_XRD_ERROR_RESPONSE = 400
_XRD_SERVER_TRANSIENT = {3005, 3007, 3008, 3009, 3012, 3014, 3020, 3024, 3034, 3035}
_XRD_SERVER_AUTH = {3010, 3030}


def classify(exc: BaseException | Any, *, catalog: bool = False) -> Classified:
    """Classify `exc` (or an XRootDStatus); `catalog=True` when the call went to the Rucio server."""
    transport = T_CATALOG if catalog else T_STORAGE
    message = _message(exc)
    found = _by_type(exc)
    if found is None:
        found = _by_message(message) or PERMANENT
    if found is AUTH and _BAD_PATH.search(f"{message} {_response_text(exc)}"):
        found = PERMANENT  # the path is wrong, not the credentials: other files may well pass
    return Classified(transport if found is _TRANSPORT else found, message)


def _response_text(exc: BaseException) -> str:
    """The body of an HTTP error: XrdHttp says there why it answered 403."""
    response = getattr(exc, "response", None)
    return response.text[:1000] if isinstance(exc, requests.exceptions.HTTPError) and response is not None else ""


def _by_type(exc: BaseException) -> object | None:
    """The class given by the exception's type, or None when only its message can tell."""
    if isinstance(exc, ChecksumMismatch):
        return PERMANENT
    if isinstance(exc, rucio_exc.RucioException):
        return next((cls for types, cls in _RUCIO if isinstance(exc, types)), None)
    for status in (exc, getattr(exc, "status", None)):  # an XRootDStatus, or an XRootDError's
        if hasattr(status, "ok") and hasattr(status, "code"):
            return _xrootd(status)
    if isinstance(exc, requests.exceptions.HTTPError):
        return None if exc.response is None else _http_status(exc.response.status_code)
    if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return PERMANENT  # a trust-store problem: no back-off will fix it
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError)):
        return _TRANSPORT
    if isinstance(exc, OSError):
        return PERMANENT  # reading the local source failed: unreadable or gone
    return None


def _http_status(code: int) -> object:
    if code in (401, 403):
        return AUTH
    if code >= 500 or code in (408, 423, 429):  # 423 Locked: an earlier attempt still holds the file
        return _TRANSPORT
    return PERMANENT


def _xrootd(status: object) -> object:
    """Map an `XRootDStatus`-like object (`.ok`, `.code`, `.errno`)."""
    code, errno = getattr(status, "code", None), getattr(status, "errno", None)
    if code == _XRD_ERROR_RESPONSE:
        if errno in _XRD_SERVER_AUTH:
            return AUTH
        return T_STORAGE if errno in _XRD_SERVER_TRANSIENT else PERMANENT
    if code in _XRD_CLIENT_AUTH:
        return AUTH
    return T_STORAGE if code in _XRD_CLIENT_TRANSIENT else PERMANENT


def _by_message(message: str) -> object | None:
    return next((cls for pattern, cls in _MESSAGE_PATTERNS if pattern.search(message)), None)


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- replication errors, grouped for `rules watch` -------------------------------------------------

REPLICATION_ERROR_GROUPS: list[tuple[str, re.Pattern[str]]] = [
    (group, re.compile(pattern, re.I)) for group, pattern in (
        ("storage-out-of-memory", r"OutOfDirectMemoryError|out of (direct )?memory"),
        ("no-write-pools", r"No write pools online|read[-/ ]?only|marked read/only"),
        ("no-space", r"No space left|ENOSPC|\[3009\]|insufficient space|no free space"),
        # XRootD refusing the directory of a new file (MKCOL): a read-only or full export does this
        ("destination-refused", r"DESTINATION MAKE_PARENT HTTP 5\d\d"),
        # gfal2 says it either way round: `HTTP 500 : Copy failed with mode streamed, ...` (2020's
        # storage) and `Copy failed (3rd pull, 3rd push, streamed). Last attempt: HTTP 500 : ...`
        ("http-500-copy", r"HTTP 500\b.*Copy failed|Copy failed\b.*HTTP 500\b|Copy failed with mode streamed"),
        ("checksum-mismatch", r"(checksum|adler32).{0,60}(mismatch|do(es)? not match|differ)"),
        ("source-missing", r"SOURCE\b.{0,80}(HTTP 404|File not found|No such file)"),
        ("destination-exists", r"DESTINATION\b.{0,80}(exists|HTTP 409)|destination file exists"),
        ("no-sources", r"NO_SOURCES|no sources?\b|no source replica|MissingSourceReplica"),
        ("quota", r"insufficient quota|quota exceeded|over ?quota"),
        ("transfer-timeout", r"timed? ?out|timeout|operation expired"),
        ("permission", r"permission (denied|refused)|\[3010\]|not authori[sz]ed|HTTP 403"),
        ("auth", r"(token|proxy).{0,20}expired|authentication failed|" + _HTTP_AUTH),
        ("storage-unavailable", r"connection refused|could not connect|no route to host"
                                r"|service unavailable|connection reset"),
    )
]
"""(group, pattern) pairs, first match wins; append a pair to recognise a new kind of error."""


def replication_error_group(message: str) -> str:
    """The group a transfer/rule error message belongs to, or "other"."""
    return next((group for group, pattern in REPLICATION_ERROR_GROUPS if pattern.search(message)),
                "other")
