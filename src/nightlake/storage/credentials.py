"""What nightlake presents to storage, by the same conventions as to Rucio (`catalog.credentials`).

The CA: `[client] ca_cert` of the Rucio config, else `X509_CERT_DIR`, else the system trust store;
verification is never switched off. With `auth_type = oidc` the storage gets the WLCG bearer token
(`Authorization: Bearer`, re-read from its file when renewed, as the catalog does), and no client
certificate, so the token alone is what the storage authorises; otherwise `X509_USER_PROXY` is the
TLS client certificate (XRootD's GSI reads it itself over root://).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from nightlake.catalog import credentials


@dataclass(frozen=True)
class StorageCredentials:
    ca_cert: str | bool
    client_cert: str | None
    token: Callable[[], str] | None = None  # the current bearer token, fresh at each call


def from_rucio_config() -> StorageCredentials:
    """The credentials a run presents to its RSEs, as its Rucio client would choose them."""
    from rucio.common.config import config_get

    ca: str | bool = config_get("client", "ca_cert", raise_exception=False, default=None) or \
        os.environ.get("X509_CERT_DIR") or True
    if credentials.auth_type() == "oidc":
        return StorageCredentials(ca, None, credentials.TokenSource().fresh)
    return StorageCredentials(ca, os.environ.get("X509_USER_PROXY") or None)
