"""The one bounded in-flight loop: what it holds, and the order it hands finished calls back in."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from nightlake.flows.window import Window


def test_never_more_than_size_calls_in_flight_and_every_call_comes_back_once():
    running, peak, lock = 0, 0, threading.Lock()

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with lock:
            running -= 1
        return i * 2

    with ThreadPoolExecutor(8) as pool:
        window: Window[int] = Window(pool, 3)
        back = [pair for i in range(50) for pair in window.submit(work, i)] + list(window.drain())
    assert peak <= 3 and len(window) == 0
    assert sorted(item for item, _ in back) == list(range(50))
    assert all(future.result() == item * 2 for item, future in back)


def test_a_call_that_finishes_is_handed_back_while_a_slow_one_is_still_running():
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        window: Window[str] = Window(pool, 2)
        assert list(window.submit(lambda _: release.wait(5), "slow")) == []
        assert list(window.submit(lambda _: None, "fast")) == []
        (first, _), = list(window.submit(lambda _: None, "next"))  # room is made by the fast one
        assert first == "fast" and not release.is_set()
        release.set()
        assert sorted(item for item, _ in window.drain()) == ["next", "slow"]


def test_a_failed_call_comes_back_with_its_exception():
    def fail(_):
        raise ValueError("no")

    with ThreadPoolExecutor(1) as pool:
        window: Window[int] = Window(pool, 1)
        list(window.submit(fail, 1))
        ((item, future),) = list(window.drain())
    assert item == 1 and isinstance(future.exception(), ValueError)
