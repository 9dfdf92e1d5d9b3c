"""Why replication failed, file by file: the messages Rucio keeps for each transfer, grouped.

A rule's `error` holds only its last transfer error, and `examine_replication_rule` gives per stuck
lock the *state* of its last request, not its message (rucio/rucio#781). Each failed attempt's own
message (gfal2's, through the transfer tool and Rucio's poller) is kept on the request: in the live
table until the finisher archives it, then in the request history. So the harvest is:

1. one `examine_replication_rule` per rule with stuck locks: which files are stuck, where;
2. the failed requests of each (source, destination) pair those locks can have used (the last
   source Rucio recorded, the RSEs holding the file), live (`list_requests`, one streamed call)
   and archived (`list_requests_history`, paged; root or admin), kept only for the stuck locks:
   the latest message of each file;
3. a stuck lock no request explains (no source was ever found, so the request had no source RSE)
   falls back to the rule's error and the lock's last request state.

A rule can also fail without ever settling: with many files, the judge-repairer re-queues the stuck
locks while others still copy, so the rule is never STUCK with nothing replicating. For the rules
still moving when a watch ends, `failed_attempts` gives each file's latest failed attempt from the
same requests (a file may have been copied since: these are attempts, not lost files).

The calls grow with the pairs of RSEs and the rules with stuck locks, and the history's pages with
the failed requests of those pairs (all accounts: Rucio filters it by RSEs and state only), never
with the files that went well. Each
stuck lock counts once, under the group `failures.replication_error_group` gives its message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nightlake.catalog.client import Catalog
from nightlake.catalog.failures import replication_error_group

FAILED_STATES = "F,L,N,A,M,O"  # RequestState FAILED, LOST, NO_SOURCES, SUBMISSION_FAILED, MISMATCH_SCHEME, ONLY_TAPE
NO_ERROR_RECORDED = "STUCK, but Rucio recorded no error"


@dataclass(frozen=True)
class StuckLock:
    """One file's lock that Rucio gave up on, and the message that says why."""

    rule_id: str
    name: str
    rse: str
    message: str


@dataclass(frozen=True)
class ErrorGroup:
    group: str
    count: int  # stuck locks (or files with failed attempts) whose error falls in this group
    rses: tuple[str, ...]  # the destinations they were stuck at
    sample: str
    retrying: bool = False  # failed attempts of rules still replicating, not stuck locks


def harvest(catalog: Catalog, statuses: Iterable[Any]) -> list[StuckLock]:
    """Every stuck lock of the rules in `statuses` (RuleStatus), with its own latest message."""
    stuck = [s for s in statuses if s.stuck]
    examined = {s.rule_id: (s, catalog.examine_rule(s.rule_id).get("transfers") or []) for s in stuck}
    transfers = [(s.rule_id, t) for s, ts in examined.values() for t in ts]
    keys = {(rule_id, t["name"], t["rse"]) for rule_id, t in transfers}
    messages = request_messages(catalog, links(t for _, t in transfers), keys.__contains__)
    unlinked = without_distance(catalog, [t for _, t in transfers])
    locks = []
    for s, ts in examined.values():
        for t in ts:
            key = (s.rule_id, t["name"], t["rse"])
            message = messages.get(key) or lock_message(s.error, t)
            if no_path := sorted(source for source, rse in unlinked if rse == t["rse"] and source in sources_of(t)):
                message += (f"; no distance from {', '.join(no_path)} to {t['rse']}: the conveyor has no path "
                            f"(rucio rse distance set {no_path[0]} {t['rse']} --distance 1)")
            locks.append(StuckLock(*key, message))
        locks += [StuckLock(s.rule_id, "?", s.rse_expression, s.error or NO_ERROR_RECORDED)] \
            * max(0, s.stuck - len(ts))  # locks Rucio counted but did not list
    return locks


def sources_of(transfer: dict[str, Any]) -> set[str]:
    """The RSEs holding an available replica of a stuck lock's file, as `examine` lists them."""
    return {rse for rse, _ in transfer.get("sources") or []}


def without_distance(catalog: Catalog, transfers: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(source, destination) pairs of NO_SOURCES locks whose file has replicas but no distance links
    a holder to the destination: the cause Rucio's message does not name (one call per RSE pair)."""
    pairs = {(source, t["rse"]) for t in transfers if "NO_SOURCES" in str(t.get("last_error"))
             for source in sources_of(t) if source != t["rse"]}
    return {pair for pair in pairs if not catalog.has_distance(*pair)}


def links(transfers: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(source, destination) pairs the stuck locks' requests can have used: the last source Rucio
    recorded, and the RSEs holding the file now. A lock that never had a source adds none."""
    found = set()
    for t in transfers:
        sources = {t.get("last_source")} | sources_of(t)
        found |= {(source, t["rse"]) for source in sources if source and source != t["rse"]}
    return found


def failed_attempts(catalog: Catalog, rule_ids: set[str], pairs: set[tuple[str, str]]) -> list[StuckLock]:
    """Each file of these rules whose latest request failed, with that request's message, from the
    live requests and the history of the (source, destination) pairs the rules can use."""
    if not rule_ids:
        return []
    messages = request_messages(catalog, pairs, lambda key: key[0] in rule_ids)
    return [StuckLock(*key, message) for key, message in sorted(messages.items())]


def request_messages(catalog: Catalog, pairs: set[tuple[str, str]],
                     wanted: Callable[[tuple[str, str, str]], bool]) -> dict[tuple[str, str, str], str]:
    """{(rule id, file name, destination): the latest failed request's message}, from the live
    requests and the request history of each (source, destination) pair, for the keys `wanted`."""
    latest: dict[tuple[str, str, str], tuple[str, str]] = {}
    for source, destination in sorted(pairs):
        rows = [*catalog.transfer_requests(source, destination, FAILED_STATES),
                *catalog.request_history(source, destination, FAILED_STATES)]
        for row in rows:
            key = (row.get("rule_id"), row.get("name"), destination)
            if wanted(key) and row.get("err_msg"):
                when = str(row.get("updated_at") or "")
                if key not in latest or when >= latest[key][0]:
                    latest[key] = (when, row["err_msg"])
    return {key: message for key, (_, message) in latest.items()}


def lock_message(rule_error: str | None, transfer: dict[str, Any]) -> str:
    """Without a request's message: the rule's error carries the transfer tool's text; the lock's
    last request state (e.g. RequestState.NO_SOURCES) is the fallback. Rucio lists a lock's
    available sources only once it had a request, so "no source replica" is said only then."""
    last_request = transfer.get("last_error")
    message = rule_error or (str(last_request) if last_request not in (None, "None") else NO_ERROR_RECORDED)
    if transfer.get("attempts") and not transfer.get("sources"):
        message += "; no source replica available"
    return message


def group_errors(locks: Iterable[StuckLock], retrying: bool = False) -> list[ErrorGroup]:
    """Counts per error group, largest first, each with its RSEs and its first message as the sample."""
    counts: dict[str, int] = {}
    rses: dict[str, set[str]] = {}
    samples: dict[str, str] = {}
    for lock in locks:
        group = replication_error_group(lock.message)
        counts[group] = counts.get(group, 0) + 1
        rses.setdefault(group, set()).add(lock.rse)
        samples.setdefault(group, lock.message)
    return [ErrorGroup(group, count, tuple(sorted(rses[group])), samples[group], retrying)
            for group, count in sorted(counts.items(), key=lambda item: -item[1])]
