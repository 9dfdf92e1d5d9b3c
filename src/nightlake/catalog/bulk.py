"""Bulk calls: at most `BATCH_SIZE` items each, all-or-nothing on the server, so bisected on failure.

Rucio's bulk calls apply the whole batch or none of it. A batch that fails permanently is split in
halves, recursively, until the items at fault are isolated; the others go through. Transient
failures that outlast the retries reject the whole batch (splitting cannot help), and auth
failures and a catalog down past its patience propagate: the run must stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from nightlake.catalog.retry import AuthFailure, GaveUp, RetryPolicy, ServiceDown

BATCH_SIZE = 1000  # items per bulk call: the Rucio server's schema limit
T = TypeVar("T")


@dataclass(frozen=True)
class Rejected:
    """An item a bulk call could not take, with the failure that isolated it."""

    item: Any
    failure: GaveUp


def chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def bisect(call: Callable[[list], Any], items: list, policy: RetryPolicy) -> list[Rejected]:
    """Call with all items; on a permanent failure, call each half again, recursively."""
    if not items:
        return []
    try:
        policy.call(call, items)
        return []
    except (AuthFailure, ServiceDown):  # the run must stop: nothing to isolate
        raise
    except GaveUp as failure:
        if len(items) == 1 or failure.classified.error_class.transient:
            return [Rejected(item, failure) for item in items]
    middle = len(items) // 2
    return bisect(call, items[:middle], policy) + bisect(call, items[middle:], policy)


def bisect_chunks(call: Callable[[list], Any], items: list, policy: RetryPolicy,
                  size: int = BATCH_SIZE) -> list[Rejected]:
    """`bisect` over each chunk of `size` items."""
    return [rejected for chunk in chunks(items, size) for rejected in bisect(call, list(chunk), policy)]
