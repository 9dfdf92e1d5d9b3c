"""What a flow does with a file that failed: record it, and know when to stop the whole run.

Errors are data: a failure is classified and journaled with its original message, and a
`file.failed` event says so, the same way for uploads, registrations and downloads.

One failure is one file's problem; many in a row are a service's. An outage the retry policy's
breaker rode through fails nothing; one that outlasted the patience window (`ServiceDown`)
stops the run at once, without failing a file. `Streak` stops the run when
the same class of failure, each after its own retries, comes `STREAKS[class]` times in a row:
storage refusing credentials (one refusal may be one path's permissions), or storage that stays
down (64: more than every transfer in flight failing together). A dead RSE then costs minutes,
not the night, and a re-run resumes from the journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nightlake.catalog.credentials import CredentialExpired
from nightlake.catalog.failures import ErrorClass, classify
from nightlake.catalog.retry import CallFailed, ServiceDown
from nightlake.observe.events import EventBus, Kind

STREAKS = {ErrorClass.AUTH: 5, ErrorClass.TRANSIENT_STORAGE: 64}
MESSAGE_CHARS = 500  # of a failure's message in its event; the journal keeps all of it


def record_failure(journal: Any, records: Sequence[Any], exc: BaseException, bus: EventBus) -> None:
    """Journal `records` as failed with the class and original message of `exc`, and say so. A
    service that stayed down past the patience window, or a credential that expired, is no fault of
    the files: they keep their state, for the re-run."""
    if isinstance(exc, (ServiceDown, CredentialExpired)):
        return
    classified = exc.classified if isinstance(exc, CallFailed) else classify(exc)
    journal.fail(records, classified.error_class, classified.message)
    bus.emit(Kind.FILE_FAILED, files=len(records), error_class=classified.error_class.value,
             message=classified.message[:MESSAGE_CHARS])


class Streak:
    """Failures of one class in a row; a success, or a failure of another kind, ends the streak."""

    def __init__(self, limits: dict[ErrorClass, int] = STREAKS):
        self.limits = limits
        self.error_class: ErrorClass | None = None
        self.count = 0

    def success(self) -> None:
        self.error_class, self.count = None, 0

    def failure(self, exc: BaseException) -> None:
        """Count `exc`; raise it when it ends a streak long enough to stop the run. Only a call
        that used up its retries (`CallFailed`) says anything about the service behind it."""
        if isinstance(exc, (ServiceDown, CredentialExpired)):  # past the patience window, or expired: stop now
            raise exc
        if not isinstance(exc, CallFailed):
            self.success()
            return
        error_class = exc.classified.error_class
        self.count = self.count + 1 if error_class is self.error_class else 1
        self.error_class = error_class
        if self.count >= self.limits.get(error_class, float("inf")):
            raise exc
