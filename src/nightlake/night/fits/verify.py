"""FITS integrity: every HDU's `CHECKSUM` and `DATASUM` verified on the bytes as they stream by.

The check rides on the one pass that reads a file anyway (its upload, or the adler32 of an in-place
file): `checked` wraps a chunk iterator, walks the HDUs as the bytes pass (each header's blocks up
to END, then its data blocks, sized from BITPIX, NAXISn, PCOUNT and GCOUNT), sums each part as
FITS's 32-bit ones' complement, and raises `BadChecksum` after the last byte if a sum is wrong,
before the storage can complete the put, so the file is never stored nor registered. Bytes that do
not start like FITS pass unchecked, and so does an HDU without the two cards.

DATASUM is the data's sum as a decimal string; CHECKSUM makes the whole HDU sum to -0 (all ones)
(the FITS checksum convention, FITS standard 4.0 appendix J).

`verify` is the same walk for a file registered in place by the daemon, which nothing else reads
before it is replicated: one pass gives its primary header (the metadata), its adler32 and the
checksums of every HDU.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlake.night.fits.header import CARD, MAGIC, BadHeader, parse_cards, read_blocks
from nightlake.night.fits.layout import BLOCK, fold, ones_sum

_END = b"END" + b" " * (CARD - 3)
_MAX_HEADER_BLOCKS = 1000


class BadChecksum(ValueError):
    """A FITS file whose CHECKSUM or DATASUM does not match its bytes, or whose HDUs are cut
    short: set aside (quarantined) with this reason, never registered."""


class Verifier:
    """The state of one file's walk: feed it every byte in order, then ask `problem()`."""

    def __init__(self) -> None:
        self._carry = b""
        self._fits: bool | None = None  # unknown until the first card is seen
        self._header: list[bytes] = []
        self._data_blocks = 0  # data blocks left in the current HDU
        self._sums = (0, 0)  # (header, data) of the current HDU
        self._expect: tuple[str | None, str | None] = (None, None)  # its (CHECKSUM, DATASUM)
        self.hdus = 0
        self._problem: str | None = None

    def update(self, chunk: bytes) -> None:
        """The next bytes of the file, in any chunking: whole 2880-byte blocks are summed at once
        (numpy), the rest waits for the next chunk."""
        if self._problem or self._fits is False:
            return
        data = self._carry + chunk if self._carry else chunk
        if self._fits is None:
            if len(data) < len(MAGIC):
                self._carry = bytes(data)
                return
            self._fits = bytes(data[:len(MAGIC)]) == MAGIC
            if not self._fits:
                self._carry = b""
                return
        whole = len(data) - len(data) % BLOCK
        view = memoryview(data)
        at = 0
        while at < whole and not self._problem:
            if self._data_blocks:
                n = min(self._data_blocks, (whole - at) // BLOCK) * BLOCK
                self._sums = (self._sums[0], ones_sum(view[at:at + n], self._sums[1]))
                self._data_blocks -= n // BLOCK
                at += n
                if not self._data_blocks:
                    self._close_hdu()
            else:
                self._header_block(bytes(view[at:at + BLOCK]))
                at += BLOCK
        self._carry = bytes(view[whole:])

    def _header_block(self, block: bytes) -> None:
        self._header.append(block)
        if not any(block[i:i + CARD] == _END for i in range(0, BLOCK, CARD)):
            if len(self._header) >= _MAX_HEADER_BLOCKS:
                self._problem = f"HDU {self.hdus}: no END card in {_MAX_HEADER_BLOCKS} header blocks"
            return
        raw = b"".join(self._header)
        self._header = []
        try:
            cards = parse_cards(raw)
        except BadHeader as exc:
            self._problem = f"HDU {self.hdus}: {exc}"
            return
        self._sums = (ones_sum(raw), 0)
        self._expect = (cards.get("CHECKSUM"), cards.get("DATASUM"))
        self._data_blocks = -(-_data_bytes(cards) // BLOCK)
        if not self._data_blocks:
            self._close_hdu()

    def _close_hdu(self) -> None:
        header, data = self._sums
        checksum, datasum = self._expect
        if datasum is not None and str(datasum).strip() != str(data):
            self._problem = f"HDU {self.hdus}: DATASUM {datasum} in the header, {data} in the data"
        elif checksum is not None and fold(header + data) not in (0, 0xFFFFFFFF):
            self._problem = f"HDU {self.hdus}: CHECKSUM {checksum!r} does not match the HDU's bytes"
        self.hdus += 1

    def problem(self) -> str | None:
        """Why the file is bad, once all its bytes were fed; None if good (or not FITS)."""
        if self._problem or not self._fits:
            return self._problem
        if self._header or self._data_blocks or self._carry:
            return f"HDU {self.hdus}: the file ends inside it (truncated)"
        return None


def _data_bytes(cards: dict) -> int:
    """The data size of an HDU, from its header (FITS standard 4.0, 4.4.1.1 and 7.4.1)."""
    naxis = int(cards.get("NAXIS", 0))
    if not naxis:
        return 0
    count = 1
    for i in range(1, naxis + 1):
        count *= int(cards.get(f"NAXIS{i}", 0))
    return abs(int(cards.get("BITPIX", 8))) // 8 * int(cards.get("GCOUNT", 1)) * (int(cards.get("PCOUNT", 0)) + count)


def checked(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The chunks as they are, each FITS HDU verified on the way; raises `BadChecksum` once all
    `size` bytes were seen (before the last chunk is handed on, so a put that stops reading at
    `size` cannot complete)."""
    verifier, seen = Verifier(), 0
    for chunk in chunks:
        verifier.update(chunk)
        seen += len(chunk)
        if seen >= size and (problem := verifier.problem()):
            raise BadChecksum(f"FITS integrity: {problem}")
        yield chunk
    if problem := verifier.problem():
        raise BadChecksum(f"FITS integrity: {problem}")


CHUNK = 8 << 20  # bytes per read in `verify`


@dataclass(frozen=True)
class Verified:
    """A file whose primary header is readable and whose checksums (where present) hold."""

    header: dict[str, Any]
    size: int
    adler32: str  # 8 hex digits, as Rucio writes it


def verify(path: str | Path) -> Verified:
    """Read `path` once: its primary header, its adler32, every HDU's checksums. Raises BadHeader
    (an unreadable header), BadChecksum (a sum that does not hold, a file cut short) or OSError."""
    raw = read_blocks(path)
    header = parse_cards(raw)
    adler, size = 1, 0
    with open(path, "rb", buffering=0) as f:
        total = f.seek(0, 2)
        f.seek(len(raw))
        for chunk in checked(itertools.chain([raw], iter(lambda: f.read(CHUNK), b"")), total):
            adler, size = zlib.adler32(chunk, adler), size + len(chunk)
    return Verified(header, size, f"{adler:08x}")
