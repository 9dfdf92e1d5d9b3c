"""Start and probe the lake's transfer service (`transfers.py`), Rucio's FTS3 endpoint here.

The service runs under Debian's /usr/bin/python3, because the gfal2 bindings are built for it, as a
process of its own with the lake's host certificate. gfal2 finds the lake CA through
`X509_CERT_DIR` (`certs/cadir`, the CA under its OpenSSL subject hash) and presents the lake's
client proxy (`X509_USER_PROXY`) to the XRootD servers: over https as the TLS client certificate,
over root:// through GSI.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from pathlib import Path

from nightlake.lake import processes
from nightlake.lake.layout import Layout

PYTHON = "/usr/bin/python3"
NAME = "transfers"
MAX_ACTIVE, PER_LINK, FILE_TIMEOUT = 4, 2, 300


def start(layout: Layout) -> processes.Proc:
    """Run the service and wait until it answers `GET /` over TLS with the lake's client certificate."""
    (layout.root / NAME).mkdir(exist_ok=True)
    script = Path(__file__).with_name("transfers.py")
    argv = [PYTHON, str(script), "--port", str(layout.transfers_port), "--db", str(layout.root / NAME / "jobs.sqlite"),
            "--cert", str(layout.certs / "host.pem"), "--key", str(layout.certs / "host.key"),
            "--ca", str(layout.ca_cert), "--max-active", str(MAX_ACTIVE), "--per-link", str(PER_LINK),
            "--file-timeout", str(FILE_TIMEOUT)]
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "X509_USER_PROXY": str(layout.proxy),
           "X509_CERT_DIR": str(layout.ca_dir)}
    log = layout.logs / f"{NAME}.log"
    return processes.serve(layout.pids, NAME, argv, log, env=env, cwd=layout.root,
                           ready=lambda: healthy(layout), what="the transfer service", timeout=20)


def version(layout: Layout) -> dict | None:
    """The service's `GET /`, TLS verified against the lake CA; None when it does not answer."""
    context = ssl.create_default_context(cafile=str(layout.ca_cert))
    context.load_cert_chain(str(layout.proxy))
    try:
        with urllib.request.urlopen(f"{layout.transfers_url}/", context=context, timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def healthy(layout: Layout) -> bool:
    return version(layout) is not None
