"""Which credential the run presents, found the way Rucio's own client finds it, and kept fresh.

Rucio's conventions, so a user's `rucio` CLI and nightlake agree: `RUCIO_AUTH_TYPE`, else
`auth_type` in `rucio.cfg`; for `x509_proxy` the proxy in `client_x509_proxy` or `X509_USER_PROXY`;
for `oidc` a WLCG bearer token, discovered in the order of the WLCG Bearer Token Discovery
specification (`BEARER_TOKEN`, `BEARER_TOKEN_FILE`, `$XDG_RUNTIME_DIR/bt_u<uid>`, `/tmp/bt_u<uid>`),
the same order `rucio.common.utils.wlcg_token_discovery` follows.

A night lasts ten hours and an access token about one, so a token is not read once: oidc-agent or a
cron job writes a new one into the same file, and `TokenSource.current` re-reads the file when it
changed. A credential that has expired and was not renewed is `CredentialExpired`: the run stops
(exit 2) with one line naming the credential, where it came from and how to renew it.

No value of a token or a key ever leaves this module in a message: only where it came from and when
it expires.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from nightlake.catalog.failures import Classified, ErrorClass
from nightlake.catalog.retry import AuthFailure

AUTH_TYPES = ("userpass", "x509", "x509_proxy", "gss", "ssh", "oidc")
RENEW_TOKEN = "write a new token into it (oidc-token, or the lake's `nightlake lake token`)"
RENEW_PROXY = "make a new proxy (voms-proxy-init / xrdgsiproxy init)"


class CredentialExpired(AuthFailure):
    """The run's credential has expired and no renewed one was found: stop, say which and how to renew."""

    def __init__(self, what: str, expired: dt.datetime, renew: str):
        message = (f"{what} expired at {expired:%Y-%m-%d %H:%M:%S} UTC; {renew}, then run the same command "
                   "again: it resumes")
        super().__init__("credentials", Classified(ErrorClass.AUTH, message), 0, RuntimeError(message))


def auth_type() -> str:
    """The client's auth type, as Rucio's `BaseClient` chooses it."""
    from rucio.common.config import config_get

    return os.environ.get("RUCIO_AUTH_TYPE") or \
        config_get("client", "auth_type", raise_exception=False, default="userpass")


def _token_locations() -> list[tuple[str, Path]]:
    """Files a WLCG token may be in, in discovery order, each with how to name it in a message."""
    uid = os.geteuid()
    found = []
    if os.environ.get("BEARER_TOKEN_FILE"):
        found.append(("BEARER_TOKEN_FILE", Path(os.environ["BEARER_TOKEN_FILE"])))
    if os.environ.get("XDG_RUNTIME_DIR"):
        found.append((f"$XDG_RUNTIME_DIR/bt_u{uid}", Path(os.environ["XDG_RUNTIME_DIR"]) / f"bt_u{uid}"))
    found.append((f"/tmp/bt_u{uid}", Path(f"/tmp/bt_u{uid}")))
    return found


def token_expiry(token: str) -> dt.datetime | None:
    """The `exp` claim of a JWT, read without verifying it (the server verifies); None if it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return dt.datetime.fromtimestamp(int(claims["exp"]), dt.timezone.utc)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


@dataclass
class _Read:
    token: str
    stamp: tuple[int, int] | None  # (mtime_ns, size) of the file it was read from


class TokenSource:
    """The WLCG bearer token, re-read from its file whenever the file changes (cheap: one stat)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: _Read | None = None
        self.where, self.path = self._locate()

    @staticmethod
    def _locate() -> tuple[str, Path | None]:
        if (os.environ.get("BEARER_TOKEN") or "").strip():
            return "the token in BEARER_TOKEN", None
        for name, path in _token_locations():
            if path.is_file() and path.stat().st_size:
                return f"the token in {name} ({path})", path
        return "", None

    @property
    def found(self) -> bool:
        return bool(self.where)

    def current(self) -> str:
        """The token as it is now: the file re-read if it changed since the last call."""
        with self._lock:
            if self.path is None:
                if self._last is None:
                    self._last = _Read(os.environ.get("BEARER_TOKEN", "").strip(), None)
                return self._last.token
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._last is None or self._last.stamp != stamp:
                self._last = _Read(self.path.read_text().strip(), stamp)
            return self._last.token

    def fresh(self, now: dt.datetime | None = None) -> str:
        """The current token, or `CredentialExpired` when it has expired (renewal is the file's writer's job)."""
        token = self.current()
        expiry = token_expiry(token)
        if expiry is not None and expiry <= (now or dt.datetime.now(dt.timezone.utc)):
            raise CredentialExpired(f"the OIDC access token ({self.where})", expiry,
                                    RENEW_TOKEN if self.path else "export a new BEARER_TOKEN")
        return token


def no_token_message() -> str:
    places = ", ".join(["BEARER_TOKEN", *(name for name, _ in _token_locations())])
    return f"auth_type is oidc but no bearer token was found (looked in {places}); get one and put it there"


def proxy_path() -> Path | None:
    """The X.509 proxy the client presents: `client_x509_proxy` of rucio.cfg, else `X509_USER_PROXY`."""
    from rucio.common.config import config_get

    where = config_get("client", "client_x509_proxy", raise_exception=False, default=None) or \
        os.environ.get("X509_USER_PROXY")
    return Path(os.path.expandvars(where)).expanduser() if where else None


def check_proxy(path: Path, now: dt.datetime | None = None) -> None:
    """Refuse, before anything is written, a proxy that is missing or has expired."""
    from cryptography import x509

    from nightlake import BadInput

    if not path.is_file():
        raise BadInput(f"auth_type is x509_proxy but the proxy {path} does not exist; {RENEW_PROXY}")
    proxy = x509.load_pem_x509_certificate(path.read_bytes())
    if proxy.not_valid_after_utc <= (now or dt.datetime.now(dt.timezone.utc)):
        raise CredentialExpired(f"the X.509 proxy {path}", proxy.not_valid_after_utc, RENEW_PROXY)
