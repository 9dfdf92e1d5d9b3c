"""Riding through an outage: one breaker per target (the catalog, each RSE), shared by every caller.

Per-call retries are bounded (`retry.RetryPolicy`), so a 20-second restart of the Rucio server
would fail every call in flight and stop the run. The breaker turns "this call failed its
retries" into one decision for the whole target, rclone's pacer way:

- The first call to exhaust its retries on a transient error *opens* the breaker: the target is
  down, since then, and an `Outage` is reported once (the progress line says what the run waits
  for). Only a target that answered before can go down: one that never answered (a wrong host, a
  server not started) fails at once, as before, so a mistake is said in seconds.
- While it is open, no caller burns retries: each one waits. One of them at a time *probes* - with
  the policy's health check (Rucio's whoami, a storage stat), else its own call - with exponential
  back-off and full jitter; the others sleep on the breaker.
- The first probe that succeeds *closes* it (reported with how long it lasted) and wakes everyone:
  their calls go again with fresh retries. No file fails because of the outage.
- A target still down after `patience` seconds raises `ServiceDown` in every waiting caller: the run
  stops as before, with one line naming the service, and a re-run resumes.

`patience=0` keeps the old behaviour (no waiting), which is what unit tests of other parts use.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outage:
    """What `on_outage` receives: a target went down (`down_s` None) or came back."""

    target: str
    message: str
    patience: float
    down_s: float | None = None


class Breaker:
    """The state of one target; thread-safe."""

    def __init__(self, target: str, patience: float, base: float, cap: float,
                 on_outage: Callable[[Outage], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.target, self.patience, self.base, self.cap = target, patience, base, cap
        self.on_outage, self.clock = on_outage, clock
        self._changed = threading.Condition()
        self.down_since: float | None = None
        self.failure: Any = None  # the GaveUp that opened it: ServiceDown carries its message
        self._probing = False
        self._probes = 0
        self._last_prober: int | None = None
        self._waiters = 0
        self.seen_up = False  # the target answered at least once in this run

    @property
    def is_open(self) -> bool:
        return self.down_since is not None

    def open(self, failure: Any) -> None:
        """The target is down: `failure` (a GaveUp) used up its retries. The first caller to say so
        reports it."""
        with self._changed:
            if self.down_since is not None:
                return
            self.down_since, self.failure, self._probes = self.clock(), failure, 0
        if self.on_outage:
            self.on_outage(Outage(self.target, failure.classified.message, self.patience))

    def close(self) -> None:
        """A call went through: the target is (back) up, everyone may go again."""
        self.seen_up = True
        if self.down_since is None:
            return
        with self._changed:
            if self.down_since is None:
                return
            down_s, self.down_since = self.clock() - self.down_since, None
            self._probing = False
            self._changed.notify_all()
        if self.on_outage:
            self.on_outage(Outage(self.target, "back", self.patience, down_s=down_s))

    def expired(self) -> bool:
        since = self.down_since
        return since is not None and self.clock() - since >= self.patience

    def claim_probe(self) -> bool:
        """True if the caller is now the one prober: at most one at a time, and not the same one
        twice in a row while others wait (its own call may be the one that cannot succeed)."""
        me = threading.get_ident()
        with self._changed:
            if self._probing or self.down_since is None or (me == self._last_prober and self._waiters):
                return False
            self._probing, self._last_prober = True, me
            return True

    def release_probe(self, sleep: Callable[[float], None] | None) -> None:
        """The probe failed: let another caller probe next and, when the failure says the target is
        still down (`sleep` given), back off first (exponential, full jitter, never past the patience)."""
        with self._changed:
            self._probes += 1
            delay = random.uniform(0, min(self.cap, self.base * 2 ** min(self._probes, 32)))
            left = self.patience - (self.clock() - (self.down_since or self.clock()))
            self._probing = False
            self._changed.notify()
        if sleep is not None:
            sleep(max(0.0, min(delay, left)))

    def wait(self, timeout: float) -> None:
        """Sleep until the breaker changes, at most `timeout` seconds."""
        with self._changed:
            if self.down_since is not None:
                self._waiters += 1
                try:
                    self._changed.wait(timeout)
                finally:
                    self._waiters -= 1


class Breakers:
    """The breakers of one run, by target; policies derived from one another share them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_target: dict[str, Breaker] = {}

    def get(self, target: str, make: Callable[[], Breaker]) -> Breaker:
        with self._lock:
            if target not in self._by_target:
                self._by_target[target] = make()
            return self._by_target[target]
