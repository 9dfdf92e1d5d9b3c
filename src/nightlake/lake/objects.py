"""The lake's catalog content: the night's scope, the RSEs with their protocols, attributes,
distances and quotas. Made once, right after the schema, through the stock Rucio client API.

Every RSE's `fts` attribute names the lake's transfer service: Rucio's FTS3 transfertool sends each
transfer to the `fts` of its destination, so pointing it at a real FTS is a change of that value.
"""

from __future__ import annotations

from nightlake.lake.layout import DISTANCES, HOST, RSES, SCOPE, Layout, RSESpec
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


def create(layout: Layout, client) -> None:
    """Scope, RSEs, protocols, attributes, quotas and distances of a fresh catalog."""
    client.add_scope(ACCOUNT, SCOPE)
    _add_rses(layout, client, RSES)
    add_fts(layout, client)


def add_missing(layout: Layout, client) -> None:
    """RSEs a catalog made by an older lake lacks (ONSITE-DAQ), and every RSE's `fts`: run at `up`
    when the catalog's content changed, so an existing lake gains them without a purge."""
    known = {rse["rse"] for rse in client.list_rses()}
    _add_rses(layout, client, tuple(rse for rse in RSES if rse.name not in known))
    add_fts(layout, client)


def _add_rses(layout: Layout, client, rses: tuple[RSESpec, ...]) -> None:
    names = {rse.name for rse in rses}
    for rse in rses:
        client.add_rse(rse.name)
        for protocol in protocols(layout, rse):
            client.add_protocol(rse.name, protocol)
        for key, value in rse.attributes.items():
            client.add_rse_attribute(rse.name, key, value)
        client.set_local_account_limit(ACCOUNT, rse.name, -1)  # -1: unlimited
    for (src, dst), distance in DISTANCES.items():
        if src in names or dst in names:
            client.add_distance(src, dst, {"distance": distance})


def add_fts(layout: Layout, client) -> None:
    """Every RSE's `fts`: also run on a catalog made before the lake replicated, so that an
    existing lake starts replicating at its next `up`."""
    for rse in RSES:
        client.add_rse_attribute(rse.name, "fts", layout.transfers_url)
