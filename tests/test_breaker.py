"""Riding through an outage: the breaker of a target decides once that it is down, its callers
wait instead of failing, and the run stops only past the patience window. Real threads, short
windows; nothing here is timed, only what happened is asserted."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from nightlake.catalog.retry import GaveUp, RetryPolicy, ServiceDown, retry_after


class Service:
    """A service that answers, goes down when told, and comes back after `down_for` seconds."""

    def __init__(self):
        self.back_at = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def go_down(self, down_for: float) -> None:
        self.back_at = time.monotonic() + down_for

    def __call__(self, value=None):
        with self._lock:
            self.calls += 1
        if time.monotonic() < self.back_at:
            raise requests.ConnectionError("[Errno 111] Connection refused")
        return value


def policy(outages: list, patience: float) -> RetryPolicy:
    return RetryPolicy(max_attempts=3, base=0.01, cap=0.05, target="ONSITE", patience=patience,
                       on_outage=outages.append)


def test_callers_wait_through_an_outage_shorter_than_the_patience_and_none_fails():
    service, outages = Service(), []
    retrying = policy(outages, patience=30)
    assert retrying.call(service, "warm") == "warm"  # the target has answered: it can go down
    service.go_down(0.5)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: retrying.call(service, i), range(40)))
    assert results == list(range(40))
    down, up = outages
    assert (down.target, down.down_s, up.down_s is not None) == ("ONSITE", None, True)  # said once, each way


def test_a_second_outage_is_ridden_through_like_the_first():
    service, outages = Service(), []
    retrying = dataclasses.replace(policy(outages, patience=30), probe=service)
    retrying.call(service)
    for _ in range(2):
        service.go_down(0.3)
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda i: retrying.call(service, i), range(12))) == list(range(12))
    assert [o.down_s is None for o in outages] == [True, False, True, False]


def test_an_outage_longer_than_the_patience_stops_every_waiting_caller():
    service, outages = Service(), []
    retrying = policy(outages, patience=0.3)
    retrying.call(service)
    service.go_down(3600)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(retrying.call, service, i) for i in range(8)]
    errors = [f.exception() for f in futures]
    assert all(isinstance(e, ServiceDown) for e in errors), errors
    assert errors[0].patience == 0.3 and "Connection refused" in errors[0].classified.message
    assert len(outages) == 1  # down, and never back


def test_a_target_that_never_answered_fails_at_once_without_waiting():
    service, outages = Service(), []
    service.go_down(3600)
    with pytest.raises(GaveUp) as failed:
        policy(outages, patience=3600).call(service)
    assert not isinstance(failed.value, ServiceDown) and outages == []
    assert service.calls == 3  # its own bounded retries, then the error


def test_a_call_that_still_fails_while_the_target_answers_its_health_check_fails_alone():
    service, outages = Service(), []
    retrying = dataclasses.replace(policy(outages, patience=30), probe=service)
    retrying.call(service)

    def broken_file():
        raise requests.ConnectionError("[Errno 104] Connection reset by peer")

    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(retrying.call, broken_file)
        good = [pool.submit(retrying.call, service, i) for i in range(20)]
    assert [f.result() for f in good] == list(range(20))
    assert type(bad.exception()) is GaveUp


def test_without_patience_a_call_fails_after_its_own_retries_as_before():
    service, outages = Service(), []
    retrying = policy(outages, patience=0)
    retrying.call(service)
    service.go_down(3600)
    with pytest.raises(GaveUp) as failed:
        retrying.call(service)
    assert not isinstance(failed.value, ServiceDown) and outages == []


def test_retry_after_is_honoured_in_seconds_or_as_a_date():
    def refused(header):
        response = requests.Response()
        response.status_code, response.headers["Retry-After"] = 503, header
        return requests.HTTPError("503 Service Unavailable", response=response)

    assert retry_after(refused("7")) == 7.0
    assert 0 <= retry_after(refused("Wed, 21 Oct 2015 07:28:00 GMT")) <= 1  # in the past: at once
    assert retry_after(requests.ConnectionError("refused")) is None
    sleeps = []
    waits = RetryPolicy(max_attempts=2, base=0.5, cap=3.0, sleep=sleeps.append)
    calls = iter([refused("2"), None])

    def busy():
        if (error := next(calls)) is not None:
            raise error
        return "ok"

    assert waits.call(busy) == "ok" and sleeps == [2.0]
