"""Streaming adler32: count and checksum bytes as they pass, so no file is ever read twice."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator


def hex8(value: int) -> str:
    """adler32 as Rucio stores it: 8 lowercase hex digits, zero-padded."""
    return f"{value & 0xFFFFFFFF:08x}"


def normalise(adler32: str) -> str:
    """A caller's adler32 in Rucio's form ("1a2B3" -> "0001a2b3")."""
    return hex8(int(adler32, 16))


class Adler32Counter:
    """Wraps a chunk iterator; `size` and `adler32` are up to date once it is exhausted.

    `limit` guards the wire: an HTTP PUT announces Content-Length up front, so a source that turns
    out longer or shorter must fail *while sending*; otherwise the server would wait for bytes that
    never come (or take a truncated object as complete).
    """

    def __init__(self, chunks: Iterable[bytes], limit: int | None = None,
                 on_wrong_size=None):
        self._chunks = chunks
        self._limit = limit
        self._on_wrong_size = on_wrong_size
        self._value = 1
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self._limit is not None and self.size > self._limit:
                self._wrong_size()
            self._value = zlib.adler32(chunk, self._value)
            yield chunk
        if self._limit is not None and self.size != self._limit:
            self._wrong_size()

    def __len__(self) -> int:
        """The announced size: lets requests send Content-Length instead of chunked encoding."""
        return self._limit if self._limit is not None else self.size

    def _wrong_size(self) -> None:
        if self._on_wrong_size is not None:
            self._on_wrong_size(self.size)
        raise ValueError(f"source is not {self._limit} bytes (at least {self.size})")

    @property
    def adler32(self) -> str:
        return hex8(self._value)


def file_adler32(path, chunk_size: int = 8 << 20) -> tuple[int, str]:
    """(size, adler32) of a local file, read in chunks."""
    counter = Adler32Counter(read_chunks(path, chunk_size))
    for _ in counter:
        pass
    return counter.size, counter.adler32


def read_chunks(path, chunk_size: int = 8 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk
