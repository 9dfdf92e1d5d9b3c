"""A FITS file's primary header, read without touching its data.

`astropy.io.fits.open(path)[0].header` builds HDU objects around the file: ~5.8 ms per file in the
anchors' ingest, ~0.4 ms here with the file in the page cache. A header is only 80-character cards
in 2880-byte blocks up to the `END` card, so we read those blocks and parse the cards ourselves:
~21 us per header, 10x astropy's `Header.fromstring` on the same bytes (benchmarks/fits_header_read.py).
Cards the fast parser does not know (HIERARCH, CONTINUE, complex values) hand the whole header to
astropy, so the result is always astropy's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nightlake.night.fits import ctaometa
from nightlake.night.fits.layout import BLOCK, KEYWORDS

CARD = 80
MAX_HEADER_BLOCKS = 1000  # 2.88 MB: far beyond any real primary header; stops a scan of garbage
MAGIC = b"SIMPLE  =                    T"
_END = b"END" + b" " * (CARD - 3)
_COMMENTARY = {"", "COMMENT", "HISTORY"}
_INT = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([EeDd][+-]?[0-9]+)?")
_INVERSE = {keyword: key for key, keyword in KEYWORDS.items()}  # FITS keyword -> Rucio metadata key


class BadHeader(ValueError):
    """The file starts like FITS but its primary header cannot be read (no END card, bad card)."""


def is_fits(path: str | Path) -> bool:
    """True if the first card says `SIMPLE = T`: a 30-byte read, no parsing."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read_blocks(path: str | Path) -> bytes:
    """The primary header's blocks, up to and including the one holding END; no data is read."""
    blocks = []
    with open(path, "rb", buffering=0) as f:
        for _ in range(MAX_HEADER_BLOCKS):
            block = f.read(BLOCK)
            if len(block) < BLOCK:
                raise BadHeader(f"{path}: header ends before its END card")
            blocks.append(block)
            if any(block[i:i + CARD] == _END for i in range(0, BLOCK, CARD)):
                return b"".join(blocks)
    raise BadHeader(f"{path}: no END card in the first {MAX_HEADER_BLOCKS} header blocks")


def read_header(path: str | Path) -> dict[str, Any]:
    """Keyword -> value of the primary header (first occurrence; commentary cards left out)."""
    return parse_cards(read_blocks(path))


def file_metadata(path: str | Path) -> dict[str, Any]:
    """DID metadata of a FITS file, from its primary header's blocks read once: CTAO's reference
    metadata when the header has CTAOMETA and `ctao-datamodel` is installed (`ctaometa`), the
    keyword mapping (`rucio_metadata`) otherwise. With CTAO's metadata, TELESCOP is CTAO's facility
    name (key `facility`), so it is not taken for `telescope`; keywords CTAO's model does not know
    (RUN, SUBRUN, ...) still map as for any header."""
    raw = read_blocks(path)
    cards = parse_cards(raw)
    if ctaometa.KEYWORD in cards and (reference := ctaometa.reference_metadata(raw)) is not None:
        keywords = rucio_metadata({k: v for k, v in cards.items() if k != "TELESCOP"})
        return {**keywords, **reference}
    return rucio_metadata(cards)


def parse_cards(raw: bytes) -> dict[str, Any]:
    """Cards up to END as a dict; falls back to astropy for any card beyond the plain kinds."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BadHeader("header is not ASCII") from None
    values: dict[str, Any] = {}
    for i in range(0, len(text), CARD):
        card = text[i:i + CARD]
        keyword = card[:8].rstrip()
        if keyword == "END":
            return values
        if keyword in _COMMENTARY or card[8:10] != "= ":
            if keyword in ("HIERARCH", "CONTINUE"):
                return astropy_cards(raw)
            continue
        try:
            values.setdefault(keyword, _value(card[10:]))
        except ValueError:
            return astropy_cards(raw)
    raise BadHeader("no END card")


def astropy_cards(raw: bytes) -> dict[str, Any]:
    """The same dict as `parse_cards`, built by astropy: the reference, and the fallback. Imported
    here, not at module level: astropy takes 0.2 s to import, and most headers never need it."""
    from astropy.io import fits

    try:
        header = fits.Header.fromstring(raw.decode("ascii"))
        values: dict[str, Any] = {}
        for keyword, value in header.items():
            if keyword not in _COMMENTARY:
                values.setdefault(keyword, None if isinstance(value, fits.card.Undefined) else value)
        return values
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadHeader(f"unreadable header ({exc})") from None


def _value(field: str) -> Any:
    """A fixed- or free-format value: 'string' (with '' for a quote), T/F, integer, real, or none."""
    field = field.lstrip()
    if field.startswith("'"):
        end = 1
        while True:
            end = field.index("'", end)  # ValueError if unterminated: astropy decides
            if field[end + 1:end + 2] != "'":
                return field[1:end].replace("''", "'").rstrip()
            end += 2
    field = field.split("/", 1)[0].strip()
    if field in ("T", "F"):
        return field == "T"
    if not field:
        return None
    if _INT.fullmatch(field):
        return int(field)
    if _REAL.fullmatch(field):
        return float(field.replace("D", "E").replace("d", "e"))
    raise ValueError(f"not a plain FITS value: {field!r}")  # complex, or not FITS: astropy decides


def rucio_metadata(header: dict[str, Any]) -> dict[str, Any]:
    """Rucio DID metadata from a header: the inverse of `fitsfile.KEYWORDS`, present cards only."""
    return {key: header[keyword] for keyword, key in _INVERSE.items()
            if keyword in header and header[keyword] is not None}
