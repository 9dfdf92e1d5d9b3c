"""The one retry/back-off policy, used for every call to storage and to the catalog.

Like rclone's pacer: the policy decides *whether* to retry from the error class (see `failures`)
and *how long* to wait from the number of consecutive failures, so callers never write their own
`for attempt in range(...)`. Built on tenacity: exponential back-off with full jitter
(a uniform draw in [0, min(cap, base * 2**n)]), so workers that failed together do not retry
together, and a bounded number of attempts, so a dead RSE costs minutes, not the night.

- TRANSIENT_* errors are retried up to `max_attempts` calls in all, then `GaveUp`.
- AUTH raises `AuthFailure` at once: every other file would fail the same way, the run must stop.
- PERMANENT raises `GaveUp` at once, except `ChecksumMismatch`, which gets `checksum_retries`
  extra attempts (a re-upload) because corruption in flight can happen once.

One policy object per target (an RSE, the catalog); `target` names it in the `on_retry` hook, so
the event stream and the metrics can count retries by target and class.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from nightlake.catalog.failures import (
    ChecksumMismatch,
    Classified,
    ErrorClass,
    classify,
)

T = TypeVar("T")


class CallFailed(Exception):
    """A call the policy stopped retrying; `original` is the last exception (also `__cause__`)."""

    def __init__(self, target: str, classified: Classified, attempts: int, original: BaseException):
        super().__init__(f"{target}: {classified.error_class.value} after {attempts} attempt(s): "
                         f"{classified.message}")
        self.target, self.classified, self.attempts, self.original = (
            target, classified, attempts, original)


class GaveUp(CallFailed):
    """PERMANENT, or TRANSIENT with the attempts used up: this file or batch fails, the run goes on."""


class AuthFailure(CallFailed):
    """Credentials were refused or expired: the pipeline stops early with this message."""


@dataclass(frozen=True)
class RetryEvent:
    """What `on_retry` receives before each back-off sleep."""

    target: str
    attempt: int  # the attempt that just failed, from 1
    error_class: ErrorClass
    message: str
    delay: float


@dataclass(frozen=True)
class RetryPolicy:
    """Retry `fn` on transient errors; see the module docstring for the rules.

    `catalog=True` for the Rucio server, so transport errors count as TRANSIENT_CATALOG.
    `sleep` is injectable so tests never really sleep.
    """

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    target: str = "storage"
    catalog: bool = False
    checksum_retries: int = 1
    on_retry: Callable[[RetryEvent], None] | None = None
    sleep: Callable[[float], None] = time.sleep

    def for_target(self, target: str, **changes: Any) -> RetryPolicy:
        """The same policy for another RSE (or the catalog), with optional overrides."""
        return dataclasses.replace(self, target=target, **changes)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `fn(*args, **kwargs)`, retrying per this policy; raise `GaveUp` or `AuthFailure`."""
        attempts = 0
        mismatches = 0

        def should_retry(exc: BaseException) -> bool:
            nonlocal mismatches
            if isinstance(exc, ChecksumMismatch):
                mismatches += 1
                return mismatches <= self.checksum_retries
            return classify(exc, catalog=self.catalog).error_class.transient

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return fn(*args, **kwargs)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_random_exponential(multiplier=self.base, max=self.cap),
            retry=tenacity.retry_if_exception(should_retry),
            before_sleep=self._report,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            classified = classify(exc, catalog=self.catalog)
            failure = AuthFailure if classified.error_class is ErrorClass.AUTH else GaveUp
            raise failure(self.target, classified, attempts, exc) from exc

    def _report(self, state: tenacity.RetryCallState) -> None:
        if self.on_retry is None:
            return
        exc = state.outcome.exception()
        classified = classify(exc, catalog=self.catalog)
        if isinstance(exc, ChecksumMismatch):  # retried under its own budget
            classified = Classified(ErrorClass.TRANSIENT_STORAGE, classified.message)
        self.on_retry(RetryEvent(self.target, state.attempt_number, classified.error_class,
                                 classified.message, state.next_action.sleep))
