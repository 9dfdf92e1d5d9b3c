"""The FITS layout of a generated file: one header block, a byte payload, and the FITS checksums.

Every generated file is a primary HDU with BITPIX=8, NAXIS=1: a 2880-byte header carrying the file's
metadata, then NAXIS1 payload bytes. The payload length is chosen so the file needs no padding,
which lets the plan know each file's exact size without building it:

    written = max(2, ceil(planned / 2880)) * 2880      (header block + at least one data block)

The header cards are those astropy writes (plain values are rendered directly, byte for byte
the same, because a streamed night renders one header per file) but CHECKSUM/DATASUM are computed here,
from a DATASUM the payload source knows in advance: the header can then be written first, in one
pass, and streamed before the payload exists. No card depends on the clock or the machine.
"""

from __future__ import annotations

import numpy as np

BLOCK = 2880
HEADER_BYTES = BLOCK
FORMAT = "nightlake-payload-v1"  # bump when the bytes of a file for a given spec would change

# Lower-case metadata key (as Rucio DID metadata) -> FITS keyword, in header order.
KEYWORDS = {
    "origin": "ORIGIN", "site": "SITE", "night": "NIGHT", "telescope": "TELESCOP",
    "tel_id": "TEL_ID", "obs_id": "OBS_ID", "run": "RUN", "subrun": "SUBRUN",
    "date_obs": "DATE-OBS", "date_end": "DATE-END", "data_level": "DATALEVL",
}


def written_size(planned: int) -> int:
    """Bytes on disk for a planned size: rounded up to whole 2880-byte blocks, at least two."""
    return max(2, -(-planned // BLOCK)) * BLOCK


def fold(total: int) -> int:
    """Ones' complement reduction to 32 bits (end-around carry), as FITS checksums require."""
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def ones_sum(buf, start: int = 0) -> int:
    """FITS 32-bit ones' complement sum of big-endian words; `buf` length must be a multiple of 4."""
    words = np.frombuffer(buf, dtype=">u4")
    return fold(start + int(words.sum(dtype=np.uint64)))


def _encode_byte(byte: int) -> list[int]:
    quotient, remainder = byte // 4 + ord("0"), byte % 4
    ch = [quotient + remainder, quotient, quotient, quotient]
    changed = True
    while changed:  # keep clear of the punctuation range, as the FITS checksum convention says
        changed = False
        for j in (0, 2):
            if {ch[j], ch[j + 1]} & _EXCLUDE:
                ch[j] += 1
                ch[j + 1] -= 1
                changed = True
    return ch


_EXCLUDE = {0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60}


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit checksum (FITS checksum convention, A.7.2)."""
    asc = [0] * 16
    for i in range(4):
        ch = _encode_byte((value >> ((3 - i) * 8)) & 0xFF)
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[(i + 15) % 16] for i in range(16)).decode("ascii")


def header_bytes(meta: dict, data_bytes: int, datasum: int) -> bytes:
    """The complete 2880-byte primary header, CHECKSUM included, for a payload of known DATASUM."""
    cards = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 1), ("NAXIS1", data_bytes), ("EXTEND", True),
             *((keyword, meta[key]) for key, keyword in KEYWORDS.items()),
             ("CREATOR", FORMAT), ("CHECKSUM", "0" * 16), ("DATASUM", str(datasum))]
    raw = _fast_header(cards) or _astropy_header(cards)
    checksum = encode_checksum(0xFFFFFFFF - ones_sum(raw, datasum))
    at = raw.index(b"CHECKSUM= '") + 11
    raw = raw[:at] + checksum.encode("ascii") + raw[at + 16:]
    if len(raw) != HEADER_BYTES:
        raise ValueError(f"header of {len(raw)} bytes does not fit one FITS block (metadata too long)")
    return raw


def _astropy_header(cards: list[tuple[str, object]]) -> bytes:
    """The reference rendering: any value astropy can put in a card (imported only when needed:
    astropy takes 0.2 s to import, and the plain cards of a night never need it)."""
    from astropy.io import fits

    return fits.Header(cards).tostring().encode("ascii")


def _fast_header(cards: list[tuple[str, object]]) -> bytes | None:
    """The same bytes as astropy for plain values (bool, int, short printable ASCII strings), ~20x
    faster: a streamed night renders one header per file. None when a value needs astropy."""
    lines = []
    for keyword, value in cards:
        if isinstance(value, bool):
            text = f"{'T' if value else 'F':>20}"
        elif isinstance(value, int):
            text = f"{value:>20}"
        elif isinstance(value, str) and value and len(value) <= 60 and value.isascii() and value.isprintable() \
                and value == value.rstrip():
            text = f"{chr(39) + value.replace(chr(39), chr(39) * 2).ljust(8) + chr(39):<20}"
        else:
            return None
        lines.append(f"{keyword:<8}= {text}".ljust(80))
    if any(len(line) != 80 for line in lines):
        return None
    lines.append("END".ljust(80))
    raw = "".join(lines)
    return (raw + " " * (-len(raw) % BLOCK)).encode("ascii")
