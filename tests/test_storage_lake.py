"""Storage against the real lake (XRootD 5.5.3 on ONSITE), over https and root://."""

from __future__ import annotations

import os
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from nightlake.catalog.failures import ChecksumMismatch
from nightlake.lake.layout import RSES, SCOPE
from nightlake.storage import (
    PART_SUFFIX,
    ExistsWithDifferentContent,
    Stat,
    Stored,
    open_storage,
    pfns,
)
from nightlake.storage.credentials import from_rucio_config

pytestmark = pytest.mark.lake

ONSITE = RSES[0]
DATA = os.urandom(3 * 1024 * 1024 + 17)
ADLER = f"{zlib.adler32(DATA):08x}"


@pytest.fixture(scope="module")
def rse_info(lake):
    from rucio.rse import rsemanager

    return rsemanager.get_rse_info(ONSITE.name)


@pytest.fixture(params=["https", "root"])
def scheme(request):
    return request.param


@pytest.fixture
def store(lake, rse_info, scheme):
    protocol = next(p for p in rse_info["protocols"] if p["scheme"] == scheme)
    creds = from_rucio_config()
    storage = open_storage(protocol, ca_cert=creds.ca_cert, client_cert=creds.client_cert, pool_size=16)
    yield storage
    storage.close()


@pytest.fixture
def pfn(rse_info, scheme):
    """A fresh PFN, computed by Rucio's lfn2pfn for ONSITE."""
    name = f"storage-test-{uuid.uuid4().hex}.fits"
    return pfns(rse_info, scheme, [{"scope": SCOPE, "name": name}])[f"{SCOPE}:{name}"]


def no_parts(lake) -> bool:
    return not list(lake.rse_data(ONSITE).rglob(f"*{PART_SUFFIX}"))


def test_put_of_a_file_stores_it_with_its_adler32_and_leaves_no_part(lake, store, pfn, scratch):
    source = scratch / "source.fits"
    source.write_bytes(DATA)
    assert store.put(pfn, source, size=len(DATA)) == Stored(len(DATA), ADLER)
    assert store.stat(pfn) == Stat(len(DATA), ADLER)
    assert store.stat(pfn + PART_SUFFIX) is None and no_parts(lake)


def test_put_of_a_stream_stores_the_streamed_bytes(lake, store, pfn):
    chunks = lambda: (DATA[i:i + (1 << 20)] for i in range(0, len(DATA), 1 << 20))  # noqa: E731
    assert store.put(pfn, chunks, size=len(DATA), adler32=ADLER) == Stored(len(DATA), ADLER)
    assert store.stat(pfn) == Stat(len(DATA), ADLER) and no_parts(lake)


def test_wrong_expected_adler32_raises_and_leaves_neither_part_nor_final(lake, store, pfn):
    with pytest.raises(ChecksumMismatch):
        store.put(pfn, lambda: [DATA], size=len(DATA), adler32="00000001")
    assert store.stat(pfn) is None and store.stat(pfn + PART_SUFFIX) is None and no_parts(lake)


def test_bytes_corrupted_in_flight_are_caught_by_the_storage_checksum(lake, store, pfn):
    send = store._send

    def corrupting_send(part, body, size):  # the counter sees the true bytes, the server others
        def flipped():
            for i, chunk in enumerate(body):
                yield bytes([chunk[0] ^ 0xFF]) + chunk[1:] if i == 0 else chunk
        wire = type(body)(flipped(), limit=size)
        send(part, wire, size)
        assert body.size == size

    store._send = corrupting_send
    with pytest.raises(ChecksumMismatch, match="on storage"):
        store.put(pfn, lambda: [DATA], size=len(DATA))
    assert store.stat(pfn) is None and no_parts(lake)


def test_put_of_the_same_content_twice_succeeds(lake, store, pfn):
    first = store.put(pfn, lambda: [DATA], size=len(DATA))
    assert store.put(pfn, lambda: [DATA], size=len(DATA), adler32=ADLER) == first
    assert no_parts(lake)


def test_put_of_other_content_to_an_existing_name_raises_and_keeps_the_original(lake, store, pfn):
    store.put(pfn, lambda: [DATA], size=len(DATA))
    with pytest.raises(ExistsWithDifferentContent):
        store.put(pfn, lambda: [b"other bytes"], size=11)
    assert store.stat(pfn) == Stat(len(DATA), ADLER) and no_parts(lake)


def test_get_round_trip_returns_the_same_bytes(store, pfn, scratch):
    store.put(pfn, lambda: [DATA], size=len(DATA))
    dest = scratch / "down" / "file.fits"
    assert store.get(pfn, dest) == Stored(len(DATA), ADLER)
    assert dest.read_bytes() == DATA
    assert [p.name for p in dest.parent.iterdir()] == ["file.fits"]


def test_delete_then_stat_is_none(store, pfn):
    store.put(pfn, lambda: [b"x" * 10], size=10)
    store.delete(pfn)
    assert store.stat(pfn) is None
    store.delete(pfn)  # absent is fine


def test_concurrent_puts_from_16_threads_share_one_storage(lake, store, rse_info, scheme):
    names = [f"storage-threads-{uuid.uuid4().hex}" for _ in range(64)]
    targets = pfns(rse_info, scheme, [{"scope": SCOPE, "name": n} for n in names])
    payloads = {pfn: os.urandom(1000 + i) for i, pfn in enumerate(targets.values())}
    with ThreadPoolExecutor(16) as pool:
        stored = dict(zip(payloads, pool.map(
            lambda p: store.put(p, lambda: [payloads[p]], size=len(payloads[p])), payloads)))
    assert all(s.adler32 == f"{zlib.adler32(payloads[p]):08x}" for p, s in stored.items())
    assert all(store.stat(p) == Stat(s.size, s.adler32) for p, s in stored.items())


def test_pfns_are_where_the_stock_rucio_client_looks(lake, store, rse_info, scheme, scratch):
    """nightlake puts at pfns(); after registering the replica, Rucio's list_replicas gives the
    same PFN and the stock DownloadClient fetches the bytes."""
    from rucio.client import Client
    from rucio.client.downloadclient import DownloadClient

    name = f"storage-pfn-{scheme}-{uuid.uuid4().hex[:12]}.fits"
    pfn = pfns(rse_info, scheme, [{"scope": SCOPE, "name": name}])[f"{SCOPE}:{name}"]
    stored = store.put(pfn, lambda: [DATA], size=len(DATA))
    client = Client()
    client.add_replicas(ONSITE.name, [{"scope": SCOPE, "name": name, "bytes": stored.size,
                                       "adler32": stored.adler32}])
    replica = next(client.list_replicas([{"scope": SCOPE, "name": name}], schemes=[scheme]))
    assert list(replica["rses"][ONSITE.name]) == [pfn]

    downloader = DownloadClient()
    downloader.tracing = False
    result = downloader.download_dids([{"did": f"{SCOPE}:{name}", "base_dir": str(scratch),
                                        "rse": ONSITE.name, "force_scheme": "https"}])
    assert result[0]["clientState"] == "DONE"
    assert (scratch / SCOPE / name).read_bytes() == DATA


def test_rucio_plugin_fallback_does_the_same_verified_put(lake, scratch):
    """Rucio's own posix plugin behind the same interface (the fallback for any other scheme)."""
    from nightlake.storage.rucio_plugin import RucioPluginStorage

    protocol = {"scheme": "file", "impl": "rucio.rse.protocols.posix.Default", "hostname": "",
                "port": 0, "prefix": f"{scratch}/", "domains": {"wan": {"read": 1, "write": 1, "delete": 1}}}
    store = RucioPluginStorage(protocol)
    pfn = f"file://{scratch}/cta/ab/cd/f.fits"
    assert store.put(pfn, lambda: [DATA], size=len(DATA)) == Stored(len(DATA), ADLER)
    assert store.stat(pfn) == Stat(len(DATA), ADLER) and not list(scratch.rglob(f"*{PART_SUFFIX}"))
    with pytest.raises(ExistsWithDifferentContent):
        store.put(pfn, lambda: [b"other"], size=5)
    assert store.get(pfn, scratch / "down" / "f.fits") == Stored(len(DATA), ADLER)
    store.delete(pfn)
    assert store.stat(pfn) is None
    store.close()


def test_tls_comes_from_the_rucio_config_and_the_proxy(lake):
    creds = from_rucio_config()
    assert (creds.ca_cert, creds.client_cert) == (str(lake.ca_cert), str(lake.proxy))
