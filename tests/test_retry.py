"""The retry policy: what it retries, how long it waits, when it stops - without ever sleeping."""

from __future__ import annotations

import pytest
import requests
from rucio.common import exception as rucio_exc

from nightlake.catalog.failures import ChecksumMismatch, ErrorClass
from nightlake.catalog.retry import AuthFailure, GaveUp, RetryPolicy


class Flaky:
    """Raise the given exceptions in turn, then return "ok"; count the calls."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ("ok", args, kwargs)


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def policy(sleeps):
    return RetryPolicy(max_attempts=4, base=0.5, cap=3.0, target="XRD1", sleep=sleeps.append)


def test_a_transient_error_is_retried_until_the_call_succeeds(policy):
    fn = Flaky(requests.ConnectionError("refused"), requests.Timeout("slow"))
    assert policy.call(fn, 1, k=2) == ("ok", (1,), {"k": 2})
    assert fn.calls == 3


def test_transient_errors_give_up_after_max_attempts(policy):
    fn = Flaky(*[requests.ConnectionError("refused")] * 10)
    with pytest.raises(GaveUp) as info:
        policy.call(fn)
    assert (fn.calls, info.value.attempts) == (4, 4)
    assert info.value.classified.error_class is ErrorClass.TRANSIENT_STORAGE


def test_a_permanent_error_is_not_retried(policy, sleeps):
    fn = Flaky(rucio_exc.DataIdentifierAlreadyExists("cta:f1"))
    with pytest.raises(GaveUp) as info:
        policy.call(fn)
    assert (fn.calls, sleeps) == (1, [])
    assert isinstance(info.value.original, rucio_exc.DataIdentifierAlreadyExists)


def test_an_auth_error_raises_auth_failure_at_once(policy):
    fn = Flaky(rucio_exc.CannotAuthenticate("token expired"))
    with pytest.raises(AuthFailure, match="token expired"):
        policy.call(fn)
    assert fn.calls == 1


def test_auth_failure_is_not_caught_as_gave_up(policy):
    with pytest.raises(AuthFailure):
        try:
            policy.call(Flaky(rucio_exc.AccessDenied("no")))
        except GaveUp:
            pytest.fail("AuthFailure must stop the run, not fail one file")


def test_a_checksum_mismatch_is_retried_once_then_permanent(policy):
    mismatch = ChecksumMismatch("root://x//f", "01020304", "0a0b0c0d")
    fn = Flaky(mismatch, mismatch, mismatch)
    with pytest.raises(GaveUp) as info:
        policy.call(fn)
    assert fn.calls == 2 and info.value.classified.error_class is ErrorClass.PERMANENT


def test_delays_are_jittered_below_an_exponential_envelope_and_capped(sleeps):
    policy = RetryPolicy(max_attempts=9, base=0.5, cap=3.0, sleep=sleeps.append)
    with pytest.raises(GaveUp):
        policy.call(Flaky(*[requests.ConnectionError("refused")] * 9))
    envelope = [min(3.0, 0.5 * 2 ** n) for n in range(len(sleeps))]
    assert len(sleeps) == 8 and all(0 <= s <= e for s, e in zip(sleeps, envelope))
    assert len(set(sleeps)) > 1


def test_on_retry_reports_target_attempt_class_and_delay(sleeps):
    seen = []
    policy = RetryPolicy(target="catalog", catalog=True, sleep=sleeps.append, on_retry=seen.append)
    policy.call(Flaky(rucio_exc.DatabaseException("deadlock"), requests.ConnectionError("reset")))
    assert [(e.target, e.attempt, e.error_class) for e in seen] == [
        ("catalog", 1, ErrorClass.TRANSIENT_CATALOG), ("catalog", 2, ErrorClass.TRANSIENT_CATALOG)]
    assert [e.delay for e in seen] == sleeps


def test_for_target_keeps_the_policy_and_renames_the_target(policy):
    offsite = policy.for_target("OFFSITE", max_attempts=2)
    assert (offsite.target, offsite.max_attempts, offsite.cap) == ("OFFSITE", 2, policy.cap)
