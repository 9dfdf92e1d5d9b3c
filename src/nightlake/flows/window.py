"""The one bounded in-flight loop: at most `size` calls running on a pool, whatever the night.

Uploads, downloads and generated files all go through it. Items are submitted one by one from a
stream (the journal's keyset pages, a plan), and finished ones are handed back as they complete,
so a slow transfer delays only its own file, never a whole batch, and memory stays bounded by
`size`, not by the number of files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    """At most `size` calls in flight on `pool`; `submit` and `drain` yield (item, future) pairs
    of the calls that finished, for the caller to settle in its own thread."""

    def __init__(self, pool: ThreadPoolExecutor, size: int):
        self._pool, self._size = pool, size
        self._futures: dict[Future, T] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def submit(self, work: Callable[[T], Any], item: T) -> Iterator[tuple[T, Future]]:
        """Wait for room (yielding what finishes meanwhile), then start `work(item)`."""
        while len(self._futures) >= self._size:
            yield from self._finished()
        self._futures[self._pool.submit(work, item)] = item

    def drain(self) -> Iterator[tuple[T, Future]]:
        """Everything still in flight, as it finishes."""
        while self._futures:
            yield from self._finished()

    def cancel(self) -> None:
        """Cancel the calls that have not started (a run that stops leaves them journaled)."""
        for future in self._futures:
            future.cancel()

    def _finished(self) -> Iterator[tuple[T, Future]]:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        for future in done:
            yield self._futures.pop(future), future
