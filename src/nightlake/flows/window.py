"""The one bounded in-flight loop: at most `size` calls running on a pool, whatever the night.

Uploads, downloads and generated files all go through it. Items are submitted one by one from a
stream (the journal's keyset pages, a plan), and finished ones are handed back as they complete,
so a slow transfer delays only its own file, never a whole batch, and memory stays bounded by
`size`, not by the number of files.

Finished calls arrive on a queue their futures put themselves on: `concurrent.futures.wait`
registers a waiter on every future in flight each time it is called, once per finished file,
which was 7.5 % of the CPU of a retrieve of small files (32 in flight).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    """At most `size` calls in flight on `pool`; `submit` and `drain` yield (item, future) pairs
    of the calls that finished, for the caller to settle in its own thread."""

    def __init__(self, pool: ThreadPoolExecutor, size: int):
        self._pool, self._size = pool, size
        self._futures: dict[Future, T] = {}
        self._done: queue.SimpleQueue[Future] = queue.SimpleQueue()

    def __len__(self) -> int:
        return len(self._futures)

    def submit(self, work: Callable[[T], Any], item: T) -> Iterator[tuple[T, Future]]:
        """Wait for room (yielding what finishes meanwhile), then start `work(item)`."""
        while len(self._futures) >= self._size:
            yield from self._finished()
        future = self._pool.submit(work, item)
        self._futures[future] = item
        future.add_done_callback(self._done.put)

    def drain(self) -> Iterator[tuple[T, Future]]:
        """Everything still in flight, as it finishes."""
        while self._futures:
            yield from self._finished()

    def cancel(self) -> None:
        """Cancel the calls that have not started (a run that stops leaves them journaled)."""
        for future in self._futures:
            future.cancel()

    def _finished(self) -> Iterator[tuple[T, Future]]:
        """The next call to finish (waiting for it), then any others already finished."""
        future = self._done.get()
        while True:
            yield self._futures.pop(future), future
            try:
                future = self._done.get_nowait()
            except queue.Empty:
                return
