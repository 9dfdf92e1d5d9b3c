"""Where a local lake keeps its state and which loopback ports it uses.

One directory holds everything (databases, storage, certificates, logs, PID files); the ports derive
from one base port, so a test lake and a demo lake never clash when given different bases.
The layout is written to `lake.json` at `up`, so `status`, `env` and `down` read what was started
rather than re-deriving it from flags that may have changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nightlake import BadInput

RUCIO_VERSION = "41.5.1"
DEFAULT_PORT_BASE = 28000
HOST = "127.0.0.1"
SCOPE = "cta"
# Rucio's policy the lake runs: its own generic one, or CTAO's policy package (absolute DID names
# `/<vo>/<scope>/...`, the scope taken from the name, identity lfn2pfn), in a server venv of its own.
POLICIES = ("generic", "ctao")
CTAO_VO = "ctao"
CTAO_SCOPES = ("root", "acada")  # `/ctao` is in `root` (the policy says so), `/ctao/acada/...` in `acada`


@dataclass(frozen=True)
class RSESpec:
    """One storage element of the lake: an XRootD server with root:// and https (WebDAV)."""

    name: str
    index: int
    attributes: dict = field(default_factory=dict)


# Modelled on the 2020 data challenge: one on-site ingest endpoint, two off-site RSEs; and the on-site
# DAQ buffer, whose files the daemon registers in place: its PFNs are paths (Rucio's `identity`
# lfn2pfn: `<prefix>/<scope>/<name>`), the layout an on-site writer uses, and it deletes nothing greedily.
RSES = (
    RSESpec("ONSITE", 0, {"ONSITE": True, "site": "CTAO-NORTH", "greedyDeletion": True}),
    RSESpec("OFFSITE-A", 1, {"OFFSITE": True, "site": "OFFSITE-A", "greedyDeletion": True}),
    RSESpec("OFFSITE-B", 2, {"OFFSITE": True, "site": "OFFSITE-B", "greedyDeletion": True}),
    RSESpec("ONSITE-DAQ", 3, {"DAQ": True, "site": "CTAO-NORTH", "lfn2pfn_algorithm": "identity"}),
)
DAQ = RSES[3]

# Distances (lower is closer): the on-site endpoint ships to both off-site RSEs, which mirror each other.
DISTANCES = {
    ("ONSITE", "OFFSITE-A"): 1, ("ONSITE", "OFFSITE-B"): 2,
    ("OFFSITE-A", "OFFSITE-B"): 1, ("OFFSITE-A", "ONSITE"): 3,
    ("OFFSITE-B", "OFFSITE-A"): 1, ("OFFSITE-B", "ONSITE"): 3,
    ("ONSITE-DAQ", "OFFSITE-A"): 1, ("ONSITE-DAQ", "OFFSITE-B"): 2,
}


def default_dir() -> Path:
    """`NIGHTLAKE_LAKE_DIR`, else `.nightlake/lake` under the working directory."""
    return Path(os.environ.get("NIGHTLAKE_LAKE_DIR", Path.cwd() / ".nightlake" / "lake")).absolute()


def default_port_base() -> int:
    return int(os.environ.get("NIGHTLAKE_LAKE_PORT_BASE", DEFAULT_PORT_BASE))


def default_server_venv(policy: str = "generic") -> Path:
    """The Rucio server's own venv, shared by every lake of one policy on the machine (installing it
    is the slow part); a policy package makes a venv of its own, so the generic one never holds it."""
    suffix = "" if policy == "generic" else f"-{policy}"
    if env := os.environ.get(f"NIGHTLAKE_SERVER_VENV{suffix.upper().replace('-', '_')}"):
        return Path(env).absolute()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "nightlake" / f"rucio-server-{RUCIO_VERSION}{suffix}"


@dataclass(frozen=True)
class Layout:
    """Paths and ports of one lake."""

    root: Path
    port_base: int
    server_venv: Path
    policy: str = "generic"

    @property
    def rucio_port(self) -> int:
        return self.port_base

    @property
    def pg_port(self) -> int:
        return self.port_base + 1

    @property
    def transfers_port(self) -> int:
        """The transfer service (FTS3 REST subset), the RSEs' `fts` attribute."""
        return self.port_base + 2

    @property
    def idp_port(self) -> int:
        """The identity provider (OIDC), issuing the tokens Rucio and the RSEs accept."""
        return self.port_base + 3

    def root_port(self, rse: RSESpec) -> int:
        return self.port_base + 10 + rse.index

    def https_port(self, rse: RSESpec) -> int:
        return self.port_base + 20 + rse.index

    def ports(self) -> dict[str, int]:
        """Every port the lake listens on, named by its component."""
        ports = {"rucio-server": self.rucio_port, "postgresql": self.pg_port, "transfers": self.transfers_port,
                 "identity-provider": self.idp_port}
        for rse in RSES:
            ports[f"xrootd {rse.name} root://"] = self.root_port(rse)
            ports[f"xrootd {rse.name} https://"] = self.https_port(rse)
        return ports

    @property
    def rucio_url(self) -> str:
        return f"https://{HOST}:{self.rucio_port}"

    @property
    def transfers_url(self) -> str:
        return f"https://{HOST}:{self.transfers_port}"

    @property
    def idp_url(self) -> str:
        """The OIDC issuer, exactly as the tokens' `iss` and Rucio's idpsecrets write it."""
        return f"https://{HOST}:{self.idp_port}"

    # directories
    etc = property(lambda self: self.root / "etc")
    logs = property(lambda self: self.root / "logs")
    pids = property(lambda self: self.root / "pids")
    certs = property(lambda self: self.root / "certs")
    pgdata = property(lambda self: self.root / "pg" / "data")
    storage = property(lambda self: self.root / "storage")

    def rse_dir(self, rse: RSESpec) -> Path:
        return self.root / "xrootd" / rse.name

    def rse_data(self, rse: RSESpec) -> Path:
        """The XRootD `oss.localroot`; the exported namespace `/rucio` lives below it."""
        return self.storage / rse.name

    server_cfg = property(lambda self: self.etc / "server.cfg")
    client_cfg = property(lambda self: self.etc / "rucio.cfg")
    idp_dir = property(lambda self: self.root / "idp")
    token_file = property(lambda self: self.root / "tokens" / "bearer_token")  # what `lake token` renews

    def client_cfg_for(self, auth: str) -> Path:
        """The client config of one auth type: rucio.cfg (userpass), rucio-x509_proxy.cfg, rucio-oidc.cfg."""
        return self.client_cfg if auth == "userpass" else self.etc / f"rucio-{auth}.cfg"

    alembic_ini = property(lambda self: self.etc / "alembic.ini")
    ca_cert = property(lambda self: self.certs / "ca.pem")
    proxy = property(lambda self: self.certs / "x509up")
    ca_dir = property(lambda self: self.certs / "cadir")  # the CA under its subject hash: X509_CERT_DIR
    access_log = property(lambda self: self.logs / "rucio-access.log")
    state_file = property(lambda self: self.root / "lake.json")

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        self.state_file.write_text(json.dumps(data, indent=2) + "\n")

    @property
    def ctao(self) -> bool:
        return self.policy == "ctao"

    @classmethod
    def load_or_new(cls, root: Path | None = None, port_base: int | None = None,
                    server_venv: Path | None = None, policy: str | None = None) -> "Layout":
        """The saved layout of an existing lake, else a new one from flags, env and defaults. A lake
        keeps the policy it was made with: its catalog's names follow it."""
        root = (root or default_dir()).absolute()
        state = root / "lake.json"
        if state.exists():
            saved = json.loads(state.read_text())
            made_with = saved.get("policy", "generic")
            if policy and policy != made_with:
                raise BadInput(f"the lake in {root} runs Rucio's {made_with} policy, not {policy}: "
                               f"use another --dir, or `nightlake lake down --purge --dir {root}` first")
            return cls(root, int(port_base or saved["port_base"]),
                       Path(server_venv or saved["server_venv"]), made_with)
        policy = policy or "generic"
        return cls(root, port_base or default_port_base(), server_venv or default_server_venv(policy), policy)
