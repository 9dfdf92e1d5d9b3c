"""The catalog: every call nightlake makes to Rucio goes through one `Catalog`, in bulk.

Like Rucio's own `Client`, the `Catalog` is one object made of one part per kind of call:
`replicas`, `dids`, `rses`, `rules` and `scopes`. Each call takes a whole batch (at most `batch_size`
items, the server's limit) and makes one REST call per batch, never one per file; bulk writes are
pre-filtered where Rucio can say what it already has, and bisected on failure (`bulk`). Every call
runs under the one retry policy, whose `on_retry` hook turns retries into events.

rucio-clients reads its configuration when `rucio.client` is imported, so the import happens in
`Catalog._client`, not at module import. A client is not shared between threads: a flow that
calls Rucio from two threads makes two catalogs (`Catalog.twin`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from rucio.common import exception as rucio_exc

from nightlake import BadInput, __version__
from nightlake.catalog import credentials
from nightlake.catalog.bulk import BATCH_SIZE, Rejected, bisect_chunks
from nightlake.catalog.dids import DidCalls
from nightlake.catalog.replicas import ReplicaCalls
from nightlake.catalog.retry import AuthFailure, GaveUp, RetryPolicy
from nightlake.catalog.rses import RseCalls
from nightlake.catalog.rules import RuleCalls
from nightlake.catalog.scopes import ScopeCalls

# rucio-clients logs every failed request at ERROR on stderr, over the progress display; the retry
# policy already records the same messages as events, so the client's own log goes nowhere.
QUIET = logging.getLogger("nightlake.rucio-client")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
CONFIG_ERRORS = (rucio_exc.ConfigNotFound, rucio_exc.ConfigLoadingError)


def _no_configuration() -> BadInput:
    where = os.environ.get("RUCIO_CONFIG")
    return BadInput(f"no usable Rucio client configuration{f' at RUCIO_CONFIG={where}' if where else ''}: set "
                    "RUCIO_CONFIG to a rucio.cfg (for the local lake: eval \"$(nightlake lake env)\")")


def rucio_host() -> str:
    """The server the client configuration points at, to name it in messages."""
    from rucio.common.config import config_get

    return config_get("client", "rucio_host", raise_exception=False, default="?")


class Catalog(ReplicaCalls, DidCalls, RseCalls, RuleCalls, ScopeCalls):
    """Bulk Rucio operations for one thread of a run; one client, built once."""

    def __init__(self, policy: RetryPolicy | None = None, client: Any = None, batch_size: int = BATCH_SIZE):
        self.policy = policy or RetryPolicy(target="catalog", catalog=True)
        self.tokens: credentials.TokenSource | None = None
        self.client = client if client is not None else self._client()
        self.batch_size = batch_size
        if hasattr(self.client, "whoami"):  # the breaker's health check: cheap, and through the database
            self.policy = dataclasses.replace(self.policy, probe=self.client.whoami)

    def _client(self) -> Any:
        """A client that has authenticated (a refusal is an AuthFailure). No configuration at all is
        the user's to fix, so it is bad input, not a failed run."""
        try:
            from rucio.client import Client

            self._check_credentials()
            return self.policy.call(Client, logger=QUIET)
        except CONFIG_ERRORS:
            raise _no_configuration() from None
        except GaveUp as exc:
            if isinstance(exc.original, CONFIG_ERRORS):
                raise _no_configuration() from None
            raise

    def _check_credentials(self) -> None:
        """Refuse, before anything is written, a credential that is missing or expired; keep the
        token source of an oidc client, to follow its renewals."""
        kind = credentials.auth_type()
        if kind == "x509_proxy":
            if (proxy := credentials.proxy_path()) is None:
                raise BadInput("auth_type is x509_proxy but neither client_x509_proxy nor X509_USER_PROXY is set")
            credentials.check_proxy(proxy)
        elif kind == "oidc":
            self.tokens = credentials.TokenSource()
            if not self.tokens.found:
                raise BadInput(credentials.no_token_message())
            self.tokens.fresh()

    def _fresh_token(self) -> bool:
        """Present the token as its file holds it now (renewed by oidc-agent or cron); True if it
        changed. An expired one that nobody renewed raises `CredentialExpired`."""
        if self.tokens is None:
            return False
        token = self.tokens.fresh()
        if token == self.client.auth_token:
            return False
        self.client.auth_token = token
        self.client.headers["X-Rucio-Auth-Token"] = token
        return True

    def twin(self) -> Catalog:
        """Another catalog with the same policy and a client of its own, for another thread."""
        return Catalog(self.policy, batch_size=self.batch_size)

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """One catalog call under the retry policy, with the current token. A refusal is looked at
        again once: a token that expired on the way is said as such, one renewed meanwhile retried."""
        self._fresh_token()
        try:
            return self.policy.call(fn, *args, **kwargs)
        except AuthFailure:
            if not self._fresh_token():
                raise
            return self.policy.call(fn, *args, **kwargs)

    def provenance(self) -> dict[str, Any]:
        """Who and what a run talks to, for `run.json` and the report: versions, server, account."""
        from rucio import version as rucio_version

        server = self.call(self.client.ping)
        return {"versions": {"nightlake": __version__, "rucio_clients": rucio_version.version_string(),
                             "rucio_server": server.get("version")},
                "rucio_host": self.client.host, "account": self.client.account}

    def _bisected(self, call: Callable[[list], Any], items: list) -> list[Rejected]:
        self._fresh_token()
        return bisect_chunks(call, items, self.policy, self.batch_size)
