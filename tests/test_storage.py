"""Storage layer without a lake: the shared two-phase put on file://, adler32 helpers, errors."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from nightlake.catalog.failures import ChecksumMismatch, ErrorClass, classify
from nightlake.storage import (
    PART_SUFFIX,
    ExistsWithDifferentContent,
    SizeMismatch,
    Stat,
    Stored,
    TwoPhaseStorage,
    open_storage,
)
from nightlake.storage.adler import Adler32Counter, file_adler32, hex8, normalise
from nightlake.storage.file import FileStorage

DATA = bytes(range(256)) * 4000 + b"tail"
ADLER = f"{zlib.adler32(DATA):08x}"


@pytest.fixture
def store():
    storage = open_storage({"scheme": "file"})
    yield storage
    storage.close()


def parts(root: Path) -> list[Path]:
    return list(root.rglob(f"*{PART_SUFFIX}"))


def test_put_of_a_local_file_returns_size_and_adler32_and_leaves_no_part(store, tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(DATA)
    pfn = f"file://{tmp_path}/lake/a/b/f.dat"
    assert store.put(pfn, source, size=len(DATA)) == Stored(len(DATA), ADLER)
    assert (tmp_path / "lake/a/b/f.dat").read_bytes() == DATA
    assert parts(tmp_path) == []


def test_put_of_a_stream_calls_the_factory_and_stores_the_bytes(store, tmp_path):
    pfn = f"file://{tmp_path}/f.dat"
    stored = store.put(pfn, lambda: (DATA[i:i + 1000] for i in range(0, len(DATA), 1000)),
                       size=len(DATA), adler32=ADLER.upper())
    assert stored.adler32 == ADLER
    assert store.stat(pfn) == Stat(len(DATA), ADLER)


def test_wrong_expected_adler32_raises_and_leaves_nothing(store, tmp_path):
    pfn = f"file://{tmp_path}/f.dat"
    with pytest.raises(ChecksumMismatch) as info:
        store.put(pfn, lambda: [DATA], size=len(DATA), adler32="00000001")
    assert (info.value.expected, info.value.actual) == ("00000001", ADLER)
    assert store.stat(pfn) is None and parts(tmp_path) == []


@pytest.mark.parametrize("size", [len(DATA) - 1, len(DATA) + 1])
def test_source_of_the_wrong_size_raises_size_mismatch_and_leaves_nothing(store, tmp_path, size):
    pfn = f"file://{tmp_path}/f.dat"
    with pytest.raises(SizeMismatch):
        store.put(pfn, lambda: [DATA], size=size)
    assert store.stat(pfn) is None and parts(tmp_path) == []


def test_put_of_the_same_content_twice_succeeds(store, tmp_path):
    pfn = f"file://{tmp_path}/f.dat"
    first = store.put(pfn, lambda: [DATA], size=len(DATA))
    assert store.put(pfn, lambda: [DATA], size=len(DATA)) == first
    assert parts(tmp_path) == []


def test_put_of_other_content_to_an_existing_name_fails_permanently_and_keeps_the_old(store, tmp_path):
    pfn = f"file://{tmp_path}/f.dat"
    store.put(pfn, lambda: [DATA], size=len(DATA))
    with pytest.raises(ExistsWithDifferentContent) as info:
        store.put(pfn, lambda: [b"other"], size=5)
    assert classify(info.value).error_class is ErrorClass.PERMANENT
    assert (tmp_path / "f.dat").read_bytes() == DATA and parts(tmp_path) == []


def test_get_streams_to_dest_and_returns_the_adler32(store, tmp_path):
    pfn = f"file://{tmp_path}/f.dat"
    store.put(pfn, lambda: [DATA], size=len(DATA))
    dest = tmp_path / "down" / "f.dat"
    assert store.get(pfn, dest) == Stored(len(DATA), ADLER)
    assert dest.read_bytes() == DATA and parts(tmp_path / "down") == []


class Reporting(FileStorage):
    """file:// storage that reports a digest when asked, and records whether it was."""

    def __init__(self, digest: str):
        super().__init__()
        self.digest, self.asked = digest, []

    def _receive(self, pfn, dest, ask_checksum):
        self.asked.append(ask_checksum)
        return super()._receive(pfn, dest, ask_checksum)[0], self.digest if ask_checksum else None


def test_get_with_the_catalogs_adler32_checks_the_bytes_and_does_not_ask_the_storage(tmp_path):
    store = Reporting(digest="deadbeef")  # a storage digest that would fail, were it asked
    pfn = f"file://{tmp_path}/f.dat"
    store.put(pfn, lambda: [DATA], size=len(DATA))
    dest = tmp_path / "down" / "f.dat"
    assert store.get(pfn, dest, expected=Stat(len(DATA), ADLER.upper())) == Stored(len(DATA), ADLER)
    assert store.asked == [False] and dest.read_bytes() == DATA


def test_get_without_an_adler32_to_expect_checks_the_storages_own(tmp_path):
    store = Reporting(digest="deadbeef")
    pfn = f"file://{tmp_path}/f.dat"
    store.put(pfn, lambda: [DATA], size=len(DATA))
    dest = tmp_path / "down" / "f.dat"
    with pytest.raises(ChecksumMismatch):
        store.get(pfn, dest, expected=Stat(len(DATA), None))
    assert store.asked == [True] and not dest.exists() and parts(tmp_path / "down") == []


@pytest.mark.parametrize("expected", [Stat(len(DATA), "00000001"), Stat(len(DATA) + 1, ADLER)])
def test_get_of_other_bytes_than_expected_leaves_nothing_at_dest(store, tmp_path, expected):
    pfn = f"file://{tmp_path}/f.dat"
    store.put(pfn, lambda: [DATA], size=len(DATA))
    dest = tmp_path / "down" / "f.dat"
    with pytest.raises(ChecksumMismatch):  # SizeMismatch is one
        store.get(pfn, dest, expected=expected)
    assert not dest.exists() and parts(tmp_path / "down") == []


def test_delete_then_stat_is_none_and_deleting_an_absent_object_is_fine(store, tmp_path):
    pfn = f"file://{tmp_path}/f.dat"
    store.put(pfn, lambda: [DATA], size=len(DATA))
    store.delete(pfn)
    assert store.stat(pfn) is None
    store.delete(pfn)


def test_adler32_counter_matches_zlib_and_pads_to_8_hex():
    counter = Adler32Counter([b"a", b"", b"bc"])
    assert b"".join(counter) == b"abc"
    assert (counter.size, counter.adler32) == (3, f"{zlib.adler32(b'abc'):08x}")
    assert hex8(0x1234) == "00001234" and normalise("1A2B3") == "0001a2b3"


def test_file_adler32_reads_in_chunks(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(DATA)
    assert file_adler32(path, chunk_size=999) == (len(DATA), ADLER)


def test_size_mismatch_is_a_checksum_mismatch_for_the_retry_policy():
    error = SizeMismatch("here", 10, 9)
    assert isinstance(error, ChecksumMismatch) and "size mismatch" in str(error)


def test_xrootd_errors_carry_their_status_for_classification():
    from nightlake.storage.root import XRootDError

    class Status:  # the shape of XRootDStatus
        ok, code, errno, message = False, 400, 3011, "[ERROR] no such file"

    transient = type("S", (Status,), {"code": 108, "errno": 0})  # socket disconnected
    assert classify(XRootDError("stat x", Status())).error_class is ErrorClass.PERMANENT
    assert classify(XRootDError("write x", transient())).error_class is ErrorClass.TRANSIENT_STORAGE


def test_https_session_uses_the_given_ca_and_cert_not_requests_ca_bundle(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent")
    storage = open_storage({"scheme": "https"}, ca_cert="/some/ca.pem", client_cert="/some/proxy")
    session = storage._session
    assert session.verify == "/some/ca.pem" and session.cert == "/some/proxy"
    assert session.trust_env is False
    assert storage._session.get_adapter("https://x")._pool_maxsize == 8
    storage.close()


def test_https_gets_use_the_same_ca_and_cert_as_the_session(tmp_path):
    storage = open_storage({"scheme": "https"}, ca_cert=str(tmp_path), client_cert="/some/proxy")
    tls = storage._gets.connection_pool_kw
    assert (tls["cert_reqs"], tls["ca_cert_dir"], tls["cert_file"]) == ("CERT_REQUIRED", str(tmp_path), "/some/proxy")
    assert open_storage({"scheme": "https"}, ca_cert="/some/ca.pem")._gets.connection_pool_kw["ca_certs"] == "/some/ca.pem"
    storage.close()


def test_an_https_get_from_a_server_that_is_not_there_is_a_transient_error(tmp_path):
    storage = open_storage({"scheme": "https"}, timeout=2)
    with pytest.raises(Exception) as err:
        storage.get("https://127.0.0.1:1/rucio/x", tmp_path / "x", expected=Stat(1, "00000001"))
    assert classify(err.value).error_class is ErrorClass.TRANSIENT_STORAGE and not (tmp_path / "x").exists()


def test_an_https_get_answered_with_an_http_error_classifies_by_its_status(monkeypatch, tmp_path):
    import urllib3

    storage = open_storage({"scheme": "https"})
    for status, error_class in ((403, ErrorClass.AUTH), (503, ErrorClass.TRANSIENT_STORAGE),
                                (404, ErrorClass.PERMANENT)):
        answer = urllib3.HTTPResponse(body=b"", status=status, preload_content=False)
        monkeypatch.setattr(storage._gets, "request", lambda *args, answer=answer, **kwargs: answer)
        with pytest.raises(Exception) as err:
            storage.get("https://lake/rucio/x", tmp_path / "x", expected=Stat(1, "00000001"))
        assert classify(err.value).error_class is error_class


def test_https_part_vanished_after_write_is_a_transient_error(monkeypatch):
    import requests

    from nightlake.storage.https import HttpsStorage

    store = HttpsStorage(ca_cert=True)
    gone = requests.Response()
    gone.status_code = 404
    monkeypatch.setattr(store, "_request", lambda method, pfn, **kwargs: gone)
    with pytest.raises(ConnectionError) as err:
        store._checksum("https://127.0.0.1:1/rucio/x.nightlake-part")
    assert classify(err.value).error_class is ErrorClass.TRANSIENT_STORAGE


class FlakyStorage(TwoPhaseStorage):
    """In memory; `fail_in` names the primitive that raises after the part has been written."""

    def __init__(self, fail_in: str):
        super().__init__()
        self.objects: dict[str, bytes] = {}
        self.fail_in = fail_in

    def _fail(self, where: str) -> None:
        if where == self.fail_in:
            raise ConnectionError(f"connection reset in {where}")

    def _send(self, pfn, body, size):
        self.objects[pfn] = b"".join(body)[: size // 2]
        self._fail("send")

    def _checksum(self, pfn):
        self._fail("checksum")
        return None

    def _final_stat(self, pfn):
        self._fail("final_stat")
        return None

    def _rename(self, src, dst):
        self._fail("rename")
        self.objects[dst] = self.objects.pop(src)

    def delete(self, pfn):
        self.objects.pop(pfn, None)


@pytest.mark.parametrize("fail_in", ["send", "checksum", "final_stat", "rename"])
def test_a_failed_put_deletes_its_part(fail_in):
    storage = FlakyStorage(fail_in)
    with pytest.raises(ConnectionError):
        storage.put("root://se//f.dat", lambda: [DATA], size=len(DATA))
    assert storage.objects == {}


def test_a_part_that_cannot_be_deleted_leaves_the_original_failure(monkeypatch):
    storage = FlakyStorage("send")
    monkeypatch.setattr(storage, "delete", lambda pfn: (_ for _ in ()).throw(TimeoutError("delete timed out")))
    with pytest.raises(ConnectionError, match="connection reset in send"):
        storage.put("root://se//f.dat", lambda: [DATA], size=len(DATA))


def test_a_source_that_breaks_mid_stream_leaves_no_part(store, tmp_path):
    def broken():
        yield DATA[:1000]
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        store.put(f"file://{tmp_path}/f.dat", broken, size=len(DATA))
    assert parts(tmp_path) == []
