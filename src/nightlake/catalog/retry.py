"""The one retry/back-off policy, used for every call to storage and to the catalog.

Like rclone's pacer: the policy decides *whether* to retry from the error class (see `failures`)
and *how long* to wait from the number of consecutive failures, so callers never write their own
`for attempt in range(...)`. Built on tenacity: exponential back-off with full jitter
(a uniform draw in [0, min(cap, base * 2**n)]), so workers that failed together do not retry
together, and a bounded number of attempts, so a dead RSE costs minutes, not the night.

- TRANSIENT_* errors are retried up to `max_attempts` calls in all (waiting what a `Retry-After`
  asks for, when the server sends one), then `GaveUp` - unless the target's breaker rides
  through the outage (`breaker`, with `patience` > 0): then the call waits for the target to come
  back and goes again, or raises `ServiceDown` past the patience window.
- AUTH raises `AuthFailure` at once: every other file would fail the same way, the run must stop.
- PERMANENT raises `GaveUp` at once, except `ChecksumMismatch`, which gets `checksum_retries`
  extra attempts (a re-upload) because corruption in flight can happen once.

One policy object per target (an RSE, the catalog); `target` names it in the `on_retry` and
`on_outage` hooks, so the event stream and the metrics can count retries and outages by target.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from nightlake.catalog.breaker import Breaker, Breakers, Outage
from nightlake.catalog.failures import (
    ChecksumMismatch,
    Classified,
    ErrorClass,
    classify,
)

T = TypeVar("T")
_WAITED = object()  # `_ride_through`: another caller found the target back
MAX_RIDES = 2  # outages one call waits through; a target that flaps back and down may take two
RETRY_AFTER_MAX = 600.0  # seconds: a longer pause asked for is an outage, for the breaker to ride


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


class ServiceDown(GaveUp):
    """The target stayed down past the patience window (`breaker`): the run stops, and no file is
    failed for it; a re-run resumes."""

    def __init__(self, target: str, classified: Classified, attempts: int, original: BaseException,
                 patience: float):
        super().__init__(target, classified, attempts, original)
        self.patience = patience


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
    `patience`: seconds an outage of the target is ridden through (`breaker`; 0: not at all).
    `breakers` is shared by the policies derived with `for_target`, so every caller of a target
    sees the same breaker. `probe`: a cheap health check of the target (Rucio's ping, a stat) that
    decides whether it is back; without one, the waiting call itself is the probe. `sleep` is
    injectable so tests never really sleep.
    """

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    target: str = "storage"
    catalog: bool = False
    checksum_retries: int = 1
    on_retry: Callable[[RetryEvent], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    patience: float = 0.0
    on_outage: Callable[[Outage], None] | None = None
    probe: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    breakers: Breakers = field(default_factory=Breakers, compare=False, repr=False)

    def for_target(self, target: str, **changes: Any) -> RetryPolicy:
        """The same policy for another RSE (or the catalog), with optional overrides."""
        return dataclasses.replace(self, target=target, **changes)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `fn(*args, **kwargs)`, retrying per this policy and riding through an outage of the
        target within the patience window; raise `GaveUp`, `ServiceDown` or `AuthFailure`."""
        breaker = self._breaker()
        rides = 0
        while True:
            if breaker is not None and breaker.is_open:
                outcome = self._ride_through(breaker, fn, args, kwargs)
                if outcome is not _WAITED:
                    return outcome
                rides += 1
            try:
                value = self._bounded(fn, args, kwargs, breaker)
            except GaveUp as failure:
                # a call that keeps failing while the target is back fails alone: the fault is its own
                if breaker is None or rides >= MAX_RIDES or not breaker.seen_up or \
                        not failure.classified.error_class.transient:
                    raise
                breaker.open(failure)
                continue
            if breaker is not None:
                breaker.close()
            return value

    def _breaker(self) -> Breaker | None:
        if self.patience <= 0:
            return None
        return self.breakers.get(self.target, lambda: Breaker(self.target, self.patience, self.base, self.cap,
                                                              self.on_outage))

    def _bounded(self, fn: Callable[..., T], args: tuple, kwargs: dict, breaker: Breaker | None) -> T:
        """At most `max_attempts` calls, stopping early when another caller found the target down."""
        attempts = 0
        mismatches = 0

        def should_retry(exc: BaseException) -> bool:
            nonlocal mismatches
            if isinstance(exc, ChecksumMismatch):
                mismatches += 1
                return mismatches <= self.checksum_retries
            transient = classify(exc, catalog=self.catalog).error_class.transient
            return transient and not (breaker is not None and breaker.is_open)

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return fn(*args, **kwargs)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(should_retry),
            before_sleep=self._report,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except CallFailed:
            raise  # classified already (a credential found expired on the way): stays what it is
        except Exception as exc:
            raise self._failure(exc, attempts) from exc

    def _ride_through(self, breaker: Breaker, fn: Callable[..., T], args: tuple, kwargs: dict) -> Any:
        """Wait while the target is down, probing one caller at a time; the call's own result if it
        was the probe, else `_WAITED`: the target is back, and the call goes again."""
        while breaker.is_open:
            if breaker.expired():
                failure = breaker.failure
                raise ServiceDown(self.target, failure.classified, failure.attempts, failure.original,
                                  self.patience) from failure
            if not breaker.claim_probe():
                breaker.wait(self.cap)
                continue
            try:
                value = self.probe() if self.probe else fn(*args, **kwargs)
            except CallFailed:
                breaker.release_probe(None)
                raise
            except Exception as exc:
                failure = self._failure(exc, 1)
                breaker.release_probe(self.sleep if failure.classified.error_class.transient else None)
                if not failure.classified.error_class.transient:
                    raise failure from exc
                continue
            breaker.close()
            if self.probe is None:
                return value
        return _WAITED

    def _failure(self, exc: BaseException, attempts: int) -> CallFailed:
        classified = classify(exc, catalog=self.catalog)
        failure = AuthFailure if classified.error_class is ErrorClass.AUTH else GaveUp
        return failure(self.target, classified, attempts, exc)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """`Retry-After` when the server sends one (storage that asks for a pause gets it), else
        exponential back-off with full jitter."""
        after = retry_after(state.outcome.exception())
        if after is not None:
            return after
        return tenacity.wait_random_exponential(multiplier=self.base, max=self.cap)(state)

    def _report(self, state: tenacity.RetryCallState) -> None:
        if self.on_retry is None:
            return
        exc = state.outcome.exception()
        classified = classify(exc, catalog=self.catalog)
        if isinstance(exc, ChecksumMismatch):  # retried under its own budget
            classified = Classified(ErrorClass.TRANSIENT_STORAGE, classified.message)
        self.on_retry(RetryEvent(self.target, state.attempt_number, classified.error_class,
                                 classified.message, state.next_action.sleep))


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds an HTTP response's `Retry-After` asks to wait (delta-seconds or an HTTP date), or None."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)
