"""The streamed payload: the exact bytes `generate` writes, with size, DATASUM and adler32 upfront."""

import io
import warnings
import zlib

import pytest
from astropy.io import fits

from nightlake.flows.generate import file_path, generate
from nightlake.night.fits.layout import written_size
from nightlake.night.payload import PAYLOAD_BLOCK, adler32_combine, open_stream
from nightlake.night.plan import PlannedFile

META = {"site": "CTAO-North", "night": "2026-03-14", "origin": "CTAO", "telescope": "LST-1", "tel_id": 1,
        "obs_id": 12, "run": 34, "subrun": 5, "date_obs": "2026-03-14T20:00:00.000",
        "date_end": "2026-03-14T20:01:00.000", "data_level": "DL0"}


def planned(size: int, seed: int = 1) -> PlannedFile:
    return PlannedFile("cta", f"f{size}.fits", "ds", written_size(size), seed, META)


SIZES = [1, 5760, 8640, PAYLOAD_BLOCK, PAYLOAD_BLOCK + 2880, 3 * PAYLOAD_BLOCK + 7, 4 * PAYLOAD_BLOCK + 2880]


def read_all(stream, chunk=1_000_003) -> bytes:
    return b"".join(stream.iter_chunks(chunk))


@pytest.mark.parametrize("size", SIZES)
def test_adler32_is_known_before_streaming_and_matches_zlib(size):
    stream = open_stream(planned(size))
    claimed = stream.adler32
    data = read_all(stream)
    assert len(data) == stream.size == written_size(size)
    assert claimed == f"{zlib.adler32(data):08x}"


@pytest.mark.parametrize("size", SIZES)
def test_streamed_file_is_valid_fits_with_verified_checksums(size):
    data = read_all(open_stream(planned(size)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns (does not raise) on a bad checksum
        with fits.open(io.BytesIO(data), checksum=True) as hdul:
            hdul.verify("exception")
            assert hdul[0].verify_checksum() == 1 and hdul[0].verify_datasum() == 1
            assert hdul[0].header["OBS_ID"] == 12 and hdul[0].header["DATE-OBS"] == META["date_obs"]


def test_a_corrupted_byte_fails_the_fits_checksum():
    data = bytearray(read_all(open_stream(planned(3 * 2880))))
    data[-100] ^= 0xFF
    with fits.open(io.BytesIO(bytes(data))) as hdul:
        assert hdul[0].verify_datasum() == 0


@pytest.mark.parametrize("chunk", [1, 4096, 2880 * 7, PAYLOAD_BLOCK, 10 * PAYLOAD_BLOCK])
def test_chunks_have_the_asked_size_and_the_same_bytes(chunk):
    stream = open_stream(planned(2 * PAYLOAD_BLOCK + 5 * 2880) if chunk > 1 else planned(5760))
    chunks = list(stream.iter_chunks(chunk))
    assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
    assert b"".join(chunks) == b"".join(bytes(s) for s in stream.segments())


def test_streamed_bytes_equal_generated_bytes(tmp_path):
    files = [planned(s, seed=i) for i, s in enumerate(SIZES)]
    files = [PlannedFile(f.scope, f"{i}.fits", f.dataset, f.size, f.payload_seed, f.meta) for i, f in enumerate(files)]
    generate(files, tmp_path, workers=2)
    for f in files:
        assert file_path(tmp_path, f).read_bytes() == read_all(open_stream(f))


def test_the_payload_is_not_a_plain_repetition_of_its_block():
    data = read_all(open_stream(planned(3 * PAYLOAD_BLOCK)))[2880:]
    blocks = [data[i:i + 4096] for i in range(0, len(data), PAYLOAD_BLOCK)]
    assert len(set(blocks)) == len(blocks)


def test_payload_bytes_are_pinned_for_a_given_seed():
    """Fails if the bytes for a spec would change: bump fitsfile.FORMAT and say so in the notes."""
    stream = open_stream(planned(3 * PAYLOAD_BLOCK + 7, seed=42))
    assert (stream.size, stream.adler32, stream.datasum) == (3147840, "697359c3", 266206756)


def test_adler32_combine_matches_zlib_on_concatenation():
    a, b = b"observatory night" * 101, bytes(range(256)) * 300
    assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
