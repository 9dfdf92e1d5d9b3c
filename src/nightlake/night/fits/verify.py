"""A FITS file read once, whole, to prove it is what its header says before it is registered.

An on-site file is registered in place, so nothing else will ever read it before it is replicated:
a file truncated or corrupted by its writer must be caught here. One pass gives both the adler32
Rucio records and the FITS checksums of the primary HDU (DATASUM: the ones' complement sum of
its data; CHECKSUM: header and data together sum to -0), checked only where the header has them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlake.night.fits.header import BadHeader, parse_cards, read_blocks
from nightlake.night.fits.layout import BLOCK, fold, ones_sum

CHUNK = 8 << 20  # bytes per read; a multiple of 4, as the ones' complement sum needs
NEGATIVE_ZERO = 0xFFFFFFFF


@dataclass(frozen=True)
class Verified:
    """A file whose header is readable and whose checksums (where present) hold."""

    header: dict[str, Any]
    size: int
    adler32: str  # 8 hex digits, as Rucio writes it


def verify(path: str | Path) -> Verified:
    """Read `path` once: its header, its adler32, and its FITS checksums. Raises BadHeader
    (unreadable header, short data, a checksum that does not hold) or OSError."""
    raw = read_blocks(path)
    header = parse_cards(raw)
    data_end = len(raw) + _padded(_data_bytes(header))
    adler, data_sum, size = zlib.adler32(raw), 0, len(raw)
    with open(path, "rb", buffering=0) as f:
        f.seek(len(raw))
        while chunk := f.read(CHUNK):
            adler = zlib.adler32(chunk, adler)
            summed = chunk[:max(0, data_end - size)]
            if summed:
                data_sum = ones_sum(summed + b"\0" * (-len(summed) % 4), data_sum)
            size += len(chunk)
    if size < data_end:
        raise BadHeader(f"{path}: {size} bytes, its header says {data_end} (truncated)")
    _check_sums(path, header, raw, data_sum)
    return Verified(header, size, f"{adler:08x}")


def _check_sums(path: str | Path, header: dict[str, Any], raw: bytes, data_sum: int) -> None:
    if "DATASUM" in header and str(header["DATASUM"]).strip() not in ("", str(data_sum)):
        raise BadHeader(f"{path}: DATASUM {header['DATASUM']} in the header, {data_sum} in the data")
    if "CHECKSUM" in header and fold(ones_sum(raw, data_sum)) != NEGATIVE_ZERO:
        raise BadHeader(f"{path}: the FITS CHECKSUM does not hold (header or data corrupted)")


def _data_bytes(header: dict[str, Any]) -> int:
    """The primary data's length (FITS 4.4.1.1): |BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    count = 1
    for i in range(1, naxis + 1):
        count *= int(header.get(f"NAXIS{i}", 0))
    return abs(int(header.get("BITPIX", 8))) // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + count)


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK
