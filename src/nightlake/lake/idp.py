"""The lake's identity provider: npm's oauth2-mock-server (7.2.x, which runs on Node 20) over TLS.

It serves what an OIDC client needs (discovery, JWKS, token, introspection) on loopback with the
lake's host certificate, and issues JWTs in the WLCG token profile (`idp.js` says which claims):
the audience `rucio` with the scope `openid profile`, which the Rucio server's `[oidc]` section
expects, and the audience `nightlake-storage` with `storage.read:/` and `storage.modify:/cta`, which
the XRootD RSEs' token plugin authorises (`DEFAULT_SCOPE`). It plays the part of INDIGO IAM or CTAO's Keycloak:
nightlake only ever reads tokens from where WLCG's discovery puts them, never from here.

The package is installed once with npm into the cache, beside the Rucio server's venv, never
globally; `nightlake lake install` (and so `make`) does it.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from nightlake import BadInput
from nightlake.lake import processes
from nightlake.lake.layout import SCOPE, Layout

NAME = "identity-provider"
PACKAGE = "oauth2-mock-server@7.2.1"
SCRIPT = Path(__file__).with_name("idp.js")
SUBJECT = "nightlake"  # the `sub` of the lake user's tokens, Rucio's OIDC identity of root
STORAGE_AUDIENCE = "nightlake-storage"
# What a token of the lake's user may do: log in to Rucio (`openid profile`), read anything on the
# RSEs and write below the night's scope (paths are relative to the RSEs' export, `/rucio`).
DEFAULT_SCOPE = f"openid profile storage.read:/ storage.modify:/{SCOPE}"


def package_dir(layout: Layout) -> Path:
    return layout.server_venv.parent / f"idp-{PACKAGE.replace('@', '-')}"


def installed(layout: Layout) -> bool:
    return (package_dir(layout) / "node_modules" / "oauth2-mock-server" / "package.json").exists()


def install(layout: Layout, echo=print) -> None:
    """npm-install the package into the cache once; later calls return at once."""
    if installed(layout):
        return
    if not shutil.which("npm"):
        raise BadInput("the lake's identity provider needs Node.js and npm (Debian: apt-get install nodejs npm)")
    target = package_dir(layout)
    echo(f"installing {PACKAGE} into {target} (first time only)")
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(target), PACKAGE],
                            capture_output=True, text=True)
    if result.returncode:
        raise BadInput(f"could not install {PACKAGE}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")


def start(layout: Layout) -> processes.Proc:
    layout.idp_dir.mkdir(parents=True, exist_ok=True)
    argv = ["node", str(SCRIPT), str(layout.idp_port), str(layout.certs / "host.pem"),
            str(layout.certs / "host.key"), str(layout.idp_dir / "jwk.json")]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "NODE_PATH": str(package_dir(layout) / "node_modules"), "NIGHTLAKE_IDP_SCOPE": DEFAULT_SCOPE}
    return processes.serve(layout.pids, NAME, argv, layout.logs / f"{NAME}.log", env=env, cwd=layout.idp_dir,
                           ready=lambda: healthy(layout), what="the identity provider", timeout=30, interval=0.2)


def _context(layout: Layout) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(layout.ca_cert))


def healthy(layout: Layout) -> bool:
    try:
        with urllib.request.urlopen(f"{layout.idp_url}/.well-known/openid-configuration",
                                    context=_context(layout), timeout=2) as resp:
            return json.load(resp).get("issuer") == layout.idp_url
    except (OSError, ValueError):
        return False


def jwks(layout: Layout) -> dict:
    """The provider's public signing keys (its JWKS document), read over verified TLS."""
    with urllib.request.urlopen(f"{layout.idp_url}/jwks", context=_context(layout), timeout=10) as resp:
        return json.load(resp)


def issue_token(layout: Layout, *, lifetime: int = 3600, subject: str = SUBJECT,
                audience: str | None = None, scope: str | None = None) -> str:
    """A new access token from the provider (the client-credentials grant), as oidc-agent would
    fetch one; `audience` and `scope` default to what Rucio and the storage both accept."""
    form = {"grant_type": "client_credentials", "client_id": subject, "expires_in": str(lifetime)}
    form.update({k: v for k, v in (("aud", audience), ("scope", scope)) if v})
    request = urllib.request.Request(f"{layout.idp_url}/token", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, context=_context(layout), timeout=10) as resp:
        return json.load(resp)["access_token"]


def write_token(path: Path, token: str) -> None:
    """Replace a token file atomically and privately, as oidc-agent and htgettoken write theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(part, path)


def idpsecrets(layout: Layout) -> dict:
    """Rucio's `[oidc] idpsecrets`: the provider's issuer and the clients Rucio would use with it
    (the mock provider accepts any client, so the secrets are placeholders, not credentials)."""
    client = {"issuer": layout.idp_url, "client_id": "rucio", "client_secret": "unused",
              "redirect_uris": [f"{layout.rucio_url}/auth/oidc_token"]}
    return {"lake": {**client, "SCIM": {**client, "client_id": "rucio-admin"}}}


def identity(layout: Layout) -> str:
    """The OIDC identity of the lake's user, as Rucio writes it."""
    return f"SUB={SUBJECT}, ISS={layout.idp_url}"
