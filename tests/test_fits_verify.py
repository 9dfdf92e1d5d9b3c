"""FITS integrity: CHECKSUM and DATASUM of every HDU verified in the pass that reads the file anyway
(its upload, or an in-place file's adler32); a bad file is quarantined with the reason, never
stored or registered, and no file is read twice for it."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.ingest import run as ingest_run
from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.pipeline import Ingest
from nightlake.night import sources
from nightlake.night.fits.verify import BadChecksum, checked
from nightlake.runs.journal.ingest import FileState, IngestJournal
from nightlake.storage import Stat, Stored, chunks_of


def fits_file(path: Path, seed: int = 1) -> Path:
    """Three HDUs (image, binary table, tile-compressed image), with CHECKSUM and DATASUM each."""
    rng = np.random.default_rng(seed)
    hdus = [fits.PrimaryHDU(rng.integers(0, 100, 500).astype(np.int16)),
            fits.BinTableHDU.from_columns([fits.Column(name="t", format="E", array=rng.random(2000, dtype=np.float32))]),
            fits.CompImageHDU(rng.integers(0, 1000, (40, 70)).astype(np.int32))]
    fits.HDUList(hdus).writeto(path, checksum=True, overwrite=True)
    return path


def flip(path: Path, offset: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def verify(data: bytes, chunk: int) -> None:
    for _ in checked((data[i:i + chunk] for i in range(0, len(data), chunk)), len(data)):
        pass


@pytest.mark.parametrize("chunk", [1, 999, 2880, 8 << 20])
def test_a_good_file_passes_whatever_the_chunks(tmp_path, chunk):
    verify(fits_file(tmp_path / "a.fits").read_bytes(), chunk)


def test_a_bad_datasum_a_bad_checksum_and_a_truncated_file_are_each_named(tmp_path):
    good = fits_file(tmp_path / "a.fits")
    with fits.open(good) as hdul:
        data_start = hdul[1].fileinfo()["datLoc"]
        header_start = hdul[2].fileinfo()["hdrLoc"]
    data = good.read_bytes()
    with pytest.raises(BadChecksum, match="HDU 1: DATASUM"):
        verify(flip(tmp_path / "a.fits", data_start + 10).read_bytes(), 4096)
    (tmp_path / "b.fits").write_bytes(data)
    card = data.index(b"XTENSION", header_start) + 40  # a comment byte: only CHECKSUM can tell
    with pytest.raises(BadChecksum, match="HDU 2: CHECKSUM"):
        verify(flip(tmp_path / "b.fits", card).read_bytes(), 4096)
    with pytest.raises(BadChecksum, match="truncated"):
        verify(data[:-2880], 4096)


def test_bytes_that_are_not_fits_pass_unchecked():
    verify(b"plain bytes, not FITS" * 1000, 4096)


class Consuming:
    """A storage that reads every byte it is given (as a real put does), and for in place holds
    each file with its adler32."""

    def __init__(self, files: dict[str, Path]):
        self.files, self.stored = files, []

    def put(self, pfn, data, *, size, adler32=None):
        body = b"".join(chunks_of(data))
        self.stored.append(pfn)
        return Stored(len(body), f"{zlib.adler32(body) & 0xFFFFFFFF:08x}")

    def stat(self, pfn):
        data = self.files[pfn.rsplit("/", 1)[1]].read_bytes()
        return Stat(len(data), f"{zlib.adler32(data) & 0xFFFFFFFF:08x}")

    def delete(self, pfn):
        pass


class Catalog:
    batch_size = 1000

    def __init__(self):
        self.registered = []

    def add_replicas(self, rse, files):
        self.registered += [f["name"] for f in files]
        return []

    def __getattr__(self, name):
        return lambda *args, **kwargs: {} if name in ("replicas_on", "existing") else []


@pytest.mark.parametrize("in_place", [False, True])
def test_a_bad_datasum_is_quarantined_a_good_file_passes_and_each_is_read_once(tmp_path, monkeypatch, in_place):
    night = tmp_path / "night"
    night.mkdir()
    good = fits_file(night / "good.fits")
    with fits.open(good) as hdul:
        offset = hdul[1].fileinfo()["datLoc"] + 5
    bad = flip(fits_file(night / "bad.fits", seed=2), offset)
    reads, opens = Counter(), Counter()
    real = sources.read_unchanged

    def counted(path, size, mtime_ns, chunk_size=sources.CHUNK):
        opens[Path(path).name] += 1
        for chunk in real(path, size, mtime_ns, chunk_size):
            reads[Path(path).name] += len(chunk)
            yield chunk

    monkeypatch.setattr(sources, "read_unchanged", counted)
    journal = IngestJournal.create(tmp_path / "journal.sqlite", {})
    journal.add_files(asdict(r) for r in sources.from_directory(night, "cta"))
    journal.add_datasets([("cta", "night")])
    catalog, storage = Catalog(), Consuming({"good.fits": good, "bad.fits": bad})
    Ingest(journal, catalog, storage, pfn_of=lambda b: {f"{r.scope}:{r.name}": f"root://h//rucio/{r.name}" for r in b},
           open_source=ingest_run.source_opener, options=IngestOptions(rse="ONSITE", workers=1, in_place=in_place),
           storage_policy=RetryPolicy(target="ONSITE", sleep=lambda s: None)).run()
    [quarantined] = next(journal.batches(FileState.QUARANTINED))
    assert quarantined.name == "bad.fits" and "HDU 1: DATASUM" in quarantined.error_message
    assert [r.name for r in next(journal.batches(FileState.DONE))] == ["good.fits"]
    assert catalog.registered == ["good.fits"]
    assert storage.stored == ([] if in_place else ["root://h//rucio/good.fits"])
    # one pass over each file's bytes, which the FITS check shares with the upload (or the adler32);
    # the walk before it read only the primary header's block, for the metadata
    assert opens == {"good.fits": 1, "bad.fits": 1}
    assert reads == {"good.fits": good.stat().st_size, "bad.fits": bad.stat().st_size}
