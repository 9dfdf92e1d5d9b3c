"""The bytes of a planned file, produced on the fly: the same bytes `generate` writes to disk.

A big challenge uploads terabytes it never stores. For that, a file's size, FITS DATASUM and adler32
must be known before its bytes exist (the header carries DATASUM; Rucio wants adler32). The payload
is therefore built from one pseudo-random block per file (PCG64, seeded by the plan), repeated with a
pseudo-random rotation per block-sized chunk:

    data = rot(block, o_0) + rot(block, o_1) + ...      (the last chunk cut to length)

Rotations by multiples of 8 bytes keep the block's 32-bit words, so every whole chunk has the block's
DATASUM; the byte sums and position-weighted sums of the block between piece edges give the adler32
of every piece, combined with zlib's adler32_combine formula. Cost per file: one block (<= 1 MiB) of
random numbers and two vectorised sums over it, whatever the file size (a few ms); a 2 GB file needs
no first pass over its data. Rotated chunks do not repeat at
4 KiB alignment, so block-level deduplication in storage gains almost nothing.
"""

from __future__ import annotations

import itertools
import zlib
from functools import cached_property
from typing import Iterator

import numpy as np

from nightlake.night.fits.layout import HEADER_BYTES, fold, header_bytes, ones_sum
from nightlake.night.plan import PlannedFile

PAYLOAD_BLOCK = 1 << 20
DEFAULT_CHUNK = 8 << 20
_ADLER_BASE = 65521
_POSITIONS = np.arange(PAYLOAD_BLOCK, dtype=np.float64)  # byte index i, weighting adler32's second sum


def open_stream(planned: PlannedFile) -> PayloadStream:
    """The file's bytes as a stream; cheap to open (one block), size/datasum/adler32 known upfront."""
    return PayloadStream(planned)


class PayloadStream:
    """`size`, `adler32` (8 hex digits, as Rucio stores it) and the bytes, in chunks or segments."""

    def __init__(self, planned: PlannedFile):
        self.planned = planned
        self.size = planned.size
        self.data_bytes = planned.size - HEADER_BYTES
        length = min(PAYLOAD_BLOCK, self.data_bytes)
        bitgen = np.random.PCG64(planned.payload_seed)
        # Explicit little-endian: the same bytes on any machine.
        self._block = bitgen.random_raw(length // 8).astype("<u8", copy=False).view(np.uint8)
        n_chunks = -(-self.data_bytes // length)
        self._offsets = ((bitgen.random_raw(n_chunks) % (length // 8)) * 8).tolist()

    def pieces(self) -> Iterator[tuple[int, int]]:
        """The payload as (start, end) ranges of the block, in file order."""
        length = len(self._block)
        for j, offset in enumerate(self._offsets):
            n = min(length, self.data_bytes - j * length)
            yield from _rotated(offset, n, length)

    @cached_property
    def datasum(self) -> int:
        """FITS DATASUM of the payload: whole chunks share the block's sum; a short last one is summed."""
        length = len(self._block)
        whole, rest = divmod(self.data_bytes, length)
        total = whole * ones_sum(self._block)
        if rest:
            for a, b in _rotated(self._offsets[-1], rest, length):
                total += ones_sum(self._block[a:b])
        return fold(total)

    @cached_property
    def header(self) -> bytes:
        return header_bytes(self.planned.meta, self.data_bytes, self.datasum)

    @cached_property
    def adler32(self) -> str:
        """adler32 of the whole file, from the header and block sums between piece edges (no data pass).

        Sums are taken in float64: every partial sum is an integer below 2**53, so they are exact."""
        pieces = list(self.pieces())
        cuts = sorted({0, len(self._block), *(x for piece in pieces for x in piece)})
        values = self._block.astype(np.float64)
        s1 = _prefix(cuts, np.add.reduceat(values, cuts[:-1]))
        s2 = _prefix(cuts, np.add.reduceat(values * _POSITIONS[: len(values)], cuts[:-1]))
        value = zlib.adler32(self.header)
        for a, b in pieces:
            s = s1[b] - s1[a]
            part = ((1 + s) % _ADLER_BASE) | (((b - a) + b * s - (s2[b] - s2[a])) % _ADLER_BASE) << 16
            value = adler32_combine(value, part, b - a)
        return f"{value:08x}"

    def segments(self) -> Iterator[memoryview]:
        """The file as zero-copy views (header, then block ranges): for writers that take any size."""
        yield memoryview(self.header)
        view = memoryview(self._block)
        for a, b in self.pieces():
            yield view[a:b]

    def iter_chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """The file as `chunk_size`-byte chunks (the last may be shorter): for uploaders."""
        chunk_size = min(chunk_size, self.size)  # a small file needs no 8 MiB buffer
        out, fill = bytearray(chunk_size), 0
        for seg in self.segments():
            while seg:
                take = min(len(seg), chunk_size - fill)
                out[fill:fill + take] = seg[:take]
                fill, seg = fill + take, seg[take:]
                if fill == chunk_size:
                    yield bytes(out)
                    fill = 0
        if fill:
            yield bytes(out[:fill])


def _prefix(cuts: list[int], segment_sums: np.ndarray) -> dict[int, int]:
    """Prefix sums of the block at each cut, from the sums of the segments between cuts."""
    return dict(zip(cuts, itertools.accumulate((int(x) for x in segment_sums), initial=0)))


def _rotated(offset: int, n: int, length: int) -> list[tuple[int, int]]:
    """The first n bytes of the block rotated left by `offset`, as one or two block ranges."""
    if offset + n <= length:
        return [(offset, offset + n)]
    return [(offset, length), (0, offset + n - length)]


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """adler32 of A+B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine, in Python)."""
    rem = len2 % _ADLER_BASE
    a1, b1 = adler1 & 0xFFFF, adler1 >> 16
    a2, b2 = adler2 & 0xFFFF, adler2 >> 16
    s1 = (a1 + a2 - 1) % _ADLER_BASE
    s2 = (rem * a1 + b1 + b2 - rem) % _ADLER_BASE
    return s1 | (s2 << 16)
