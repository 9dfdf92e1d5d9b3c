"""The local lake is real: stock Rucio clients upload to and download from every RSE over https
and root://, with adler32 verified end to end, and the lake's life cycle keeps its promises."""

from __future__ import annotations

import os
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest
import requests

from conftest import nightlake
from nightlake.lake import control, processes
from nightlake.lake.layout import RSES, SCOPE, Layout

pytestmark = pytest.mark.lake


def _adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def _storage_checksums(layout: Layout, rse, pfn_path: str) -> tuple[str, str]:
    """adler32 as XRootD reports it: over https (Want-Digest) and over root:// (xrdfs query)."""
    url = f"https://127.0.0.1:{layout.https_port(rse)}{pfn_path}"
    head = requests.head(url, headers={"Want-Digest": "adler32"}, verify=str(layout.ca_cert), timeout=10)
    head.raise_for_status()
    digest = head.headers["Digest"].split("=", 1)[1]
    query = subprocess.run(["xrdfs", f"root://127.0.0.1:{layout.root_port(rse)}", "query", "checksum", pfn_path],
                           capture_output=True, text=True, check=True, timeout=30)
    return digest, query.stdout.split()[1]


@pytest.mark.parametrize("scheme", ["https", "root"])
@pytest.mark.parametrize("rse", RSES, ids=lambda r: r.name)
def test_stock_client_round_trip_verifies_adler32(lake, scratch, rse, scheme):
    from rucio.client import Client
    from rucio.client.downloadclient import DownloadClient
    from rucio.client.uploadclient import UploadClient

    source = scratch / f"roundtrip-{rse.name}-{scheme}-{uuid.uuid4().hex[:8]}.fits"
    source.write_bytes(os.urandom(300_000))
    uploader = UploadClient()
    uploader.tracing = False
    uploader.upload([{"path": str(source), "rse": rse.name, "did_scope": SCOPE, "force_scheme": scheme,
                      "register_after_upload": True}])

    replica = next(Client().list_replicas([{"scope": SCOPE, "name": source.name}], schemes=[scheme]))
    assert replica["adler32"] == _adler32(source)
    assert replica["bytes"] == source.stat().st_size
    pfn = next(iter(replica["rses"][rse.name]))
    assert pfn.startswith(f"{scheme}://127.0.0.1:")
    path = "/" + pfn.split("/", 3)[3].lstrip("/")
    assert _storage_checksums(lake, rse, path) == (_adler32(source), _adler32(source))

    out = scratch / "download"
    downloader = DownloadClient()
    downloader.tracing = False
    result = downloader.download_dids([{"did": f"{SCOPE}:{source.name}", "base_dir": str(out), "rse": rse.name,
                                        "force_scheme": scheme}])
    assert result[0]["clientState"] == "DONE"
    assert (out / SCOPE / source.name).read_bytes() == source.read_bytes()


def test_download_refuses_a_corrupted_replica(lake, scratch):
    from rucio.client.downloadclient import DownloadClient
    from rucio.client.uploadclient import UploadClient
    from rucio.common.exception import NoFilesDownloaded

    rse = RSES[0]
    source = scratch / f"corrupt-{uuid.uuid4().hex[:8]}.fits"
    source.write_bytes(os.urandom(50_000))
    uploader = UploadClient()
    uploader.tracing = False
    uploader.upload([{"path": str(source), "rse": rse.name, "did_scope": SCOPE, "register_after_upload": True}])
    stored = next(lake.rse_data(rse).rglob(source.name))
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    downloader = DownloadClient()
    downloader.tracing = False
    with pytest.raises(NoFilesDownloaded):
        downloader.download_dids([{"did": f"{SCOPE}:{source.name}", "base_dir": str(scratch / "dl")}])


def test_env_lets_the_stock_rucio_cli_talk_to_the_lake(lake):
    script = f'eval "$({nightlake_cmd()} lake env --dir {lake.root})"; rucio whoami; rucio rse list'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "RUCIO_CONFIG"})
    assert result.returncode == 0, result.stderr
    assert "account    : root" in result.stdout
    assert {rse.name for rse in RSES} <= set(result.stdout.split())


def nightlake_cmd() -> str:
    from conftest import NIGHTLAKE

    return NIGHTLAKE


def test_second_up_is_a_no_op(lake):
    before = {p.name: p.pid for p in processes.recorded(lake.pids)}
    result = nightlake("lake", "up", "--dir", str(lake.root))
    assert "already up" in result.stderr
    assert {p.name: p.pid for p in processes.recorded(lake.pids)} == before


def test_status_shows_every_component_up(lake):
    result = nightlake("lake", "status", "--dir", str(lake.root))
    for name in control.components(lake):
        assert name in result.stdout
    assert "41.5.1" in result.stdout
    assert all(c.healthy for c in control.status(lake))


def test_rses_carry_site_attributes_quotas_and_distances(lake):
    from rucio.client import Client

    client = Client()
    assert [r["rse"] for r in client.list_rses("ONSITE")] == ["ONSITE"]
    assert sorted(r["rse"] for r in client.list_rses("OFFSITE")) == ["OFFSITE-A", "OFFSITE-B"]
    assert client.get_local_account_limits("root")["OFFSITE-A"] in (-1, None, float("inf"))
    assert client.get_distance("ONSITE", "OFFSITE-A")[0]["distance"] == 1
    assert SCOPE in client.list_scopes()


def _xrootd_handshake(source: str, port: int) -> bytes:
    """Send XRootD's client handshake from `source`; return what the server answers (b"" if nothing)."""
    import socket
    import struct

    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(struct.pack(">iiiii", 0, 0, 0, 4, 2012))
        try:
            return sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            return b""


def test_xrootd_admits_only_localhost_peers(lake):
    port = lake.root_port(RSES[0])
    assert len(_xrootd_handshake("127.0.0.1", port)) >= 8
    assert _xrootd_handshake("127.0.0.2", port) == b""
