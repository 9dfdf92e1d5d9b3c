"""What Apache's mod_ssl does in front of a production Rucio server, for the lake's gunicorn.

Rucio's x509 login (`/auth/x509`, `/auth/x509_proxy`) reads the client's subject from the WSGI
variable `SSL_CLIENT_S_DN`, which mod_ssl sets and gunicorn does not. This file is both gunicorn's
configuration (`-c`: the `ssl_context` hook asks for a client certificate, optional so that userpass
and token logins still work, verified against the lake CA, RFC 3820 proxies allowed as grid clients
present them) and the WSGI application (Rucio's, with `SSL_CLIENT_S_DN` set from the verified peer
certificate, in the slash form of mod_ssl's LegacyDNStringFormat; Rucio strips a proxy's own CNs).

Under CTAO's policy (NIGHTLAKE_MERGE_SLASHES=1) it also merges repeated slashes in the request's
path, as Apache's `MergeSlashes` (on by default) does in front of CTAO's Rucio: DID names are
absolute paths, so a client's `/dids/<scope>/%2Fctao%2F...` arrives, once gunicorn has decoded it,
as `/dids/<scope>//ctao/...`, and the policy's `SCOPE_NAME_REGEXP` (`/([^/]*)(?=/)(.*)`) expects
`/dids/<scope>/ctao/...` (the name keeps its one leading `/`). gunicorn merges nothing.

It runs inside the Rucio server's venv, so it imports only the standard library and Rucio.
"""

from __future__ import annotations

import os
import re
import ssl

_NAMES = {"organizationName": "O", "commonName": "CN", "countryName": "C", "organizationalUnitName": "OU",
          "domainComponent": "DC"}


def ssl_context(conf, default_ssl_context_factory):
    """gunicorn's hook: the host certificate as configured, plus an optional verified client certificate."""
    context = default_ssl_context_factory()
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(os.environ["NIGHTLAKE_CLIENT_CA"])
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return context


def subject_dn(peer: dict) -> str:
    """A peer certificate's subject (as `SSLSocket.getpeercert` gives it) in the slash form."""
    return "".join(f"/{_NAMES.get(key, key)}={value}" for rdn in peer.get("subject", ()) for key, value in rdn)


def _with_client_dn(app):
    def application(environ, start_response):
        environ.pop("SSL_CLIENT_S_DN", None)  # only ever what the TLS layer verified
        sock = environ.get("gunicorn.socket")
        peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        if peer:
            environ["SSL_CLIENT_S_DN"] = subject_dn(peer)
        return app(environ, start_response)
    return application


_REPEATED = re.compile(r"//+")


def _merging_slashes(app):
    def application(environ, start_response):
        environ["PATH_INFO"] = _REPEATED.sub("/", environ.get("PATH_INFO", ""))
        return app(environ, start_response)
    return application


def __getattr__(name: str):
    """The application is built when gunicorn's worker asks for it, not when gunicorn reads this
    file as its configuration (the master must not import Rucio)."""
    if name == "application":
        from rucio.web.rest.flaskapi.v1.main import application as rucio

        app = _with_client_dn(rucio)
        return _merging_slashes(app) if os.environ.get("NIGHTLAKE_MERGE_SLASHES") == "1" else app
    raise AttributeError(name)
