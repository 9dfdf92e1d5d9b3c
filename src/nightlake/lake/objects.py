"""The lake's catalog content: the night's scope, the RSEs with their protocols, attributes,
distances and quotas. Made once, right after the schema, through the stock Rucio client API.

Every RSE's `fts` attribute names the lake's transfer service: Rucio's FTS3 transfertool sends each
transfer to the `fts` of its destination, so pointing it at a real FTS is a change of that value.
"""

from __future__ import annotations

from nightlake.lake import certs, idp
from nightlake.lake.layout import (
    CTAO_SCOPES,
    DISTANCES,
    HOST,
    RSES,
    SCOPE,
    Layout,
    RSESpec,
)
from nightlake.lake.rucio_server import ACCOUNT
from nightlake.lake.xrootd import EXPORT

# Operation priorities (1 = preferred). Writes go over root:// first: XRootD's own protocol, which
# nightlake drives in-process, while XrdHttp 5.5.3 drops a response now and then under many
# concurrent uploads (its log says `ssl3_write_pending:bad write retry`). Reads, deletions and
# third-party copies prefer https: Rucio's WebDAV client runs in-process, its xrootd client drives
# the xrdcp/xrdfs CLI, which can stall 5 s at exit.
_PRIORITY = {"https": {"write": 2}, "root": {"read": 2, "delete": 2, "third_party_copy_read": 2,
                                             "third_party_copy_write": 2}}
_OPS = ("read", "write", "delete", "third_party_copy_read", "third_party_copy_write")


def _domains(scheme: str) -> dict:
    priority = {op: _PRIORITY[scheme].get(op, 1) for op in _OPS}
    return {"wan": priority, "lan": {op: priority[op] for op in ("read", "write", "delete")}}


def protocols(layout: Layout, rse: RSESpec) -> list[dict]:
    """https (WebDAV) and root:// on the same namespace: `/rucio/` over https is `//rucio/` over root
    (Rucio's xrootd protocol joins host and prefix, so the prefix needs the extra slash)."""
    return [
        {"scheme": "https", "hostname": HOST, "port": layout.https_port(rse), "prefix": f"{EXPORT}/",
         "impl": "rucio.rse.protocols.webdav.Default", "domains": _domains("https")},
        {"scheme": "root", "hostname": HOST, "port": layout.root_port(rse), "prefix": f"/{EXPORT}/",
         "impl": "rucio.rse.protocols.xrootd.Default", "domains": _domains("root")},
    ]


def attributes(layout: Layout, rse: RSESpec) -> dict:
    """The RSE's attributes; under CTAO's policy also those CTAO's RSEs carry: `ANY` (DIRAC's
    registration rules each new dataset to `ANY=true`) and `DIRAC-SITE` (the DIRAC site of the RSE)."""
    if not layout.ctao:
        return rse.attributes
    return {**rse.attributes, "ANY": True, "DIRAC-SITE": rse.attributes["site"]}


def scopes(layout: Layout) -> tuple[str, ...]:
    """The night's scope; under CTAO's policy `root` too, the scope of `/<vo>` itself (the top
    container DIRAC's registration makes)."""
    return CTAO_SCOPES if layout.ctao else (SCOPE,)


def create(layout: Layout, client) -> None:
    """Scopes, RSEs, protocols, attributes, quotas, distances and identities of a fresh catalog."""
    for scope in scopes(layout):
        client.add_scope(ACCOUNT, scope)
    _add_rses(layout, client, RSES)
    add_fts(layout, client)
    add_identities(layout, client)


def upgrade(layout: Layout, client, made: str) -> None:
    """Bring a catalog made by an older lake up to date at `up`, without a purge; `made` is what its
    ready file says it holds: RSEs it lacks (ONSITE-DAQ), every RSE's `fts`, the other identities."""
    known = {rse["rse"] for rse in client.list_rses()}
    _add_rses(layout, client, tuple(rse for rse in RSES if rse.name not in known))
    add_fts(layout, client)
    if "identities" not in made:
        add_identities(layout, client)


def _add_rses(layout: Layout, client, rses: tuple[RSESpec, ...]) -> None:
    names = {rse.name for rse in rses}
    for rse in rses:
        client.add_rse(rse.name)
        for protocol in protocols(layout, rse):
            client.add_protocol(rse.name, protocol)
        for key, value in attributes(layout, rse).items():
            client.add_rse_attribute(rse.name, key, value)
        client.set_local_account_limit(ACCOUNT, rse.name, -1)  # -1: unlimited
    for (src, dst), distance in DISTANCES.items():
        if src in names or dst in names:
            client.add_distance(src, dst, {"distance": distance})


def add_identities(layout: Layout, client) -> None:
    """The lake user's other ways in, all to `root`: the DN of its X.509 proxy's end-entity
    certificate (Rucio strips the proxy's own CN) and its OIDC identity at the lake's provider."""
    client.add_identity(ACCOUNT, certs.dn(certs.CLIENT), "X509", email="nightlake@localhost")
    client.add_identity(ACCOUNT, idp.identity(layout), "OIDC", email="nightlake@localhost")


def add_fts(layout: Layout, client) -> None:
    """Every RSE's `fts`: also run on a catalog made before the lake replicated, so that an
    existing lake starts replicating at its next `up`."""
    for rse in RSES:
        client.add_rse_attribute(rse.name, "fts", layout.transfers_url)
