"""The catalog side of an ingest: Rucio calls, always in bulk.

Every method takes a whole batch (at most `batch_size` items, the server's limit) and makes one
REST call per batch, never one per file. Rucio's bulk calls are all-or-nothing, so each one is
pre-filtered where Rucio can say what it already has (one bulk query), and a batch that still
fails permanently is bisected until the items at fault are isolated; the others go through.

rucio-clients reads its configuration when `rucio.client` is imported, so the import happens in
`Catalog._client`, not at module import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rucio.common import exception as rucio_exc

from nightlake import BadInput
from nightlake.catalog.retry import AuthFailure, GaveUp, RetryPolicy

BATCH_SIZE = 1000  # items per bulk call: the Rucio server's schema limit
# rucio-clients logs every failed request at ERROR on stderr, over the progress display; the retry
# policy already records the same messages as events, so the client's own log goes nowhere.
QUIET = logging.getLogger("nightlake.rucio-client")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
Did = tuple[str, str]


@dataclass(frozen=True)
class Rejected:
    """An item a bulk call could not take, with the failure that isolated it."""

    item: Any
    failure: GaveUp


CONFIG_ERRORS = (rucio_exc.ConfigNotFound, rucio_exc.ConfigLoadingError)


def _no_configuration() -> BadInput:
    where = os.environ.get("RUCIO_CONFIG")
    return BadInput(f"no usable Rucio client configuration{f' at RUCIO_CONFIG={where}' if where else ''}: set "
                    "RUCIO_CONFIG to a rucio.cfg (for the local lake: eval \"$(nightlake lake env)\")")


def rucio_host() -> str:
    """The server the client configuration points at, to name it in messages."""
    from rucio.common.config import config_get

    return config_get("client", "rucio_host", raise_exception=False, default="?")


def bisect(call: Callable[[list], Any], items: list, policy: RetryPolicy) -> list[Rejected]:
    """Call with all items; on a permanent failure split the batch in halves, recursively, so that
    only the items at fault are rejected. Transient failures that outlast the retries reject the
    whole batch (splitting cannot help), and auth failures propagate: the run must stop."""
    if not items:
        return []
    try:
        policy.call(call, items)
        return []
    except AuthFailure:
        raise
    except GaveUp as failure:
        if len(items) == 1 or failure.classified.error_class.transient:
            return [Rejected(item, failure) for item in items]
    middle = len(items) // 2
    return bisect(call, items[:middle], policy) + bisect(call, items[middle:], policy)


class Catalog:
    """Bulk Rucio operations for one run; one client, built once."""

    def __init__(self, policy: RetryPolicy | None = None, client: Any = None, batch_size: int = BATCH_SIZE):
        self.policy = policy or RetryPolicy(target="catalog", catalog=True)
        if client is None:
            client = self._client()
        self.client = client
        self.batch_size = batch_size

    def _client(self) -> Any:
        """A client that has authenticated (a refusal is an AuthFailure). No configuration at all is
        the user's to fix, so it is bad input, not a failed run; rucio-clients reads its
        configuration when `rucio.client` is first imported, hence the import here."""
        try:
            from rucio.client import Client

            return self.policy.call(Client, logger=QUIET)
        except CONFIG_ERRORS:
            raise _no_configuration() from None
        except GaveUp as exc:
            if isinstance(exc.original, CONFIG_ERRORS):
                raise _no_configuration() from None
            raise

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """One catalog call under the retry policy."""
        return self.policy.call(fn, *args, **kwargs)

    # --- replicas -------------------------------------------------------------------------------

    def replicas_on(self, rse: str, dids: Sequence[Did]) -> dict[Did, dict]:
        """What Rucio already knows of these files on `rse`: {did: {bytes, adler32, state}} — one
        `list_replicas` call per batch, all replica states included."""
        known: dict[Did, dict] = {}
        for start in range(0, len(dids), self.batch_size):
            chunk = [{"scope": s, "name": n} for s, n in dids[start:start + self.batch_size]]
            replicas = self.call(lambda c=chunk: list(self.client.list_replicas(
                c, rse_expression=rse, all_states=True, ignore_availability=True, resolve_archives=False)))
            for replica in replicas:
                if rse in replica.get("states", {}):
                    known[(replica["scope"], replica["name"])] = {
                        "bytes": replica["bytes"], "adler32": replica["adler32"],
                        "state": replica["states"][rse]}
        return known

    def add_replicas(self, rse: str, files: list[dict]) -> list[Rejected]:
        """Register replicas ({scope, name, bytes, adler32}) on `rse`, in bulk, bisecting failures."""
        def add(chunk: list[dict]) -> None:
            self.client.add_replicas(rse=rse, files=chunk)

        return self._chunked(add, files)

    # --- datasets -------------------------------------------------------------------------------

    def existing(self, dids: Sequence[Did]) -> dict[Did, dict]:
        """The DIDs among these that exist, with their metadata (one `get_metadata_bulk` per batch)."""
        found: dict[Did, dict] = {}
        for start in range(0, len(dids), self.batch_size):
            chunk = [{"scope": s, "name": n} for s, n in dids[start:start + self.batch_size]]
            for meta in self.call(lambda c=chunk: list(self.client.get_metadata_bulk(c))):
                found[(meta["scope"], meta["name"])] = meta
        return found

    def add_datasets(self, dids: Sequence[Did]) -> list[Rejected]:
        """Create the datasets that do not exist yet, in bulk. A dataset that exists but is closed
        can take no file: that is the user's to resolve, before anything is uploaded."""
        known = self.existing(dids)
        if closed := sorted(f"{s}:{n}" for (s, n), meta in known.items() if meta.get("is_open") is False):
            raise BadInput(f"dataset(s) {', '.join(closed[:3])}{' ...' if len(closed) > 3 else ''} already "
                           f"exist and are closed: choose other dataset names, or reopen them")
        items = [{"scope": s, "name": n, "type": "DATASET"} for s, n in dids if (s, n) not in known]

        def add(chunk: list[dict]) -> None:
            try:
                self.client.add_dids(chunk)
            except rucio_exc.DataIdentifierAlreadyExists:
                if len(chunk) > 1:
                    raise
        return self._chunked(add, items)

    def attach(self, dataset: Did, files: Sequence[Did]) -> list[Rejected]:
        """Attach files to a dataset; files already attached are fine (`ignore_duplicate`)."""
        scope, name = dataset
        items = [{"scope": s, "name": n} for s, n in files]

        def attach(chunk: list[dict]) -> None:
            self.client.attach_dids_to_dids([{"scope": scope, "name": name, "dids": chunk}],
                                            ignore_duplicate=True)
        return self._chunked(attach, items)

    def set_metadata(self, files: list[dict]) -> list[Rejected]:
        """Set DID metadata ({scope, name, meta}) in bulk; idempotent, so safe to repeat on resume."""
        def set_bulk(chunk: list[dict]) -> None:
            self.client.set_dids_metadata_bulk(dids=chunk, recursive=False)

        return self._chunked(set_bulk, [f for f in files if f["meta"]])

    def close(self, dataset: Did) -> None:
        """Close a dataset so that rules on it stop growing; closing a closed dataset is fine."""
        scope, name = dataset
        try:
            self.call(self.client.set_status, scope, name, open=False)
        except GaveUp as failure:
            if "already closed" not in failure.classified.message.lower() and \
                    not isinstance(failure.original, rucio_exc.UnsupportedOperation):
                raise

    def _chunked(self, call: Callable[[list], Any], items: list) -> list[Rejected]:
        rejected: list[Rejected] = []
        for start in range(0, len(items), self.batch_size):
            rejected += bisect(call, items[start:start + self.batch_size], self.policy)
        return rejected
